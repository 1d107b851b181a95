"""GRASS settings (GrassConfig, from the profile's ``train.grass`` section), the systems it is scored on
and the decoder sequence format that checkpoints are tied to."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipeline.core.config import Profile

SYSTEMS = ("base", "model", "model_silence", "model_shuffled_audio")
SYSTEM_DOC = {
    "base": "the Whisper model before decoder fine-tuning, same audio and prompt (zero-shot)",
    "model": "GRASS: Whisper with the fine-tuned decoder",
    "model_silence": "fine-tuned model fed 1 s of silence in place of the audio (control: prompt-only prior)",
    "model_shuffled_audio": "fine-tuned model fed another test clip's audio (control: does the model use the audio?)",
}
FORMAT = "grass-v1"  # decoder sequence layout; part of the checkpoint digest


class GrassConfig(BaseModel):
    """GRASS settings; ``None`` fields fall back to the profile's ``train`` section."""

    model_config = ConfigDict(extra="forbid")

    whisper: str = "openai/whisper-small"  # hub name or local directory (transformers format)
    lr: float = 1e-5  # full-decoder fine-tune (the DeSTA adapter's train.lr is far too high here)
    warmup_steps: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    checkpoint_every: int | None = None
    weight_decay: float | None = None
    language: str | None = None  # Whisper language token; None: the profile's language (omitted when the model has none)
    task_token: Literal["transcribe", "translate", "none"] = "transcribe"
    use_prompt: bool = True  # the text prompt as <|startofprev|> tokens (False: audio only, as spoken-instruction GRASS data)
    cache_encoder: bool = True  # frozen encoder outputs cached on disk (float16, 1500 x d_model per clip)
    # the frozen encoder's outputs from transformers (the loaded model) or, for a CTranslate2 ``whisper`` (e.g. the
    # embedded Whisper base, converted for the decoder), from CTranslate2 itself: same weights, int8 on CPU is
    # several times faster; ``encoder_window_s`` (CTranslate2 only): every clip in one window of that many seconds
    # (Whisper's is 30 s; shorter is cheaper, clips are cut to it)
    encoder_backend: Literal["transformers", "ctranslate2"] = "transformers"
    encoder_window_s: float = 30.0
    no_repeat_ngram_size: int = 4  # greedy decoding, as the DeSTA run


TRAIN_OVERRIDES = ("lr", "warmup_steps", "max_steps", "batch_size", "checkpoint_every", "weight_decay")


def grass_config(profile: Profile, grass: GrassConfig | dict | None = None, **overrides) -> GrassConfig:
    """The profile's ``train.grass`` section (when the config has one) <- ``grass`` <- keyword overrides."""
    base = getattr(profile.train, "grass", None)
    d = base.model_dump() if isinstance(base, BaseModel) else dict(base or {})
    d.update(grass.model_dump(exclude_unset=True) if isinstance(grass, BaseModel) else (grass or {}))
    d.update({k: v for k, v in overrides.items() if v is not None})
    return GrassConfig(**d)

