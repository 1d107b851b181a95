"""Coqui backend: production neural TTS through Coqui ``TTS.api.TTS`` - a hub model (e.g. XTTS v2 on GPU) or a
local checkpoint + config.json (``coqui_local_model``). Needs ``pip install coqui-tts==0.28.0``. No Coqui weights
ship in a registry package: on CPU it is tested with a small VITS built with random weights
(``pipeline.backends.tts.coqui_testing``)."""
from __future__ import annotations

import json
import re
import threading
import zlib
from pathlib import Path

import numpy as np

from pipeline.backends.tts.base import TTSError, check_audio, check_length_scale, check_text, configured_voices
from pipeline.core.config import TTSConfig

COQUI_PIN = "coqui-tts==0.28.0"
#: checkpoint file names tried, in order, in a local Coqui model directory (then the last checkpoint_<step>.pth)
COQUI_CHECKPOINTS = ("model.pth", "best_model.pth", "model_file.pth", "model.pt", "checkpoint.pth")


def coqui_local_model(ref: str) -> tuple[str, str] | None:
    """``(checkpoint, config.json)`` for a local Coqui model, ``None`` for a hub name (``tts_models/...``).

    A local model is a checkpoint file with ``config.json`` next to it, or a directory holding ``config.json`` and a
    checkpoint (``model.pth``, ``best_model.pth``, ... or the last ``checkpoint_<step>.pth``, as the Coqui trainer
    writes them). XTTS directories are handed over whole: XTTS loads itself from its directory. A reference that looks
    like a path but does not exist raises ``TTSError`` here rather than being sent to the hub as a model name.
    """
    p = Path(ref).expanduser()
    looks_local = p.exists() or ref.startswith(("/", ".", "~")) or p.suffix in (".pth", ".pt", ".json")
    if not looks_local:
        return None
    if not p.exists():
        raise TTSError(f"coqui: local model {ref!r} does not exist (hub models are named tts_models/<lang>/<dataset>/<model>)")
    if p.is_file():
        if p.suffix == ".json":
            raise TTSError(f"coqui: {ref!r} is a config; give the checkpoint file or the model directory")
        cfg = p.parent / "config.json"
        if not cfg.is_file():
            raise TTSError(f"coqui: no config.json next to the checkpoint {p}")
        return str(p), str(cfg)
    cfg = p / "config.json"
    if not cfg.is_file():
        raise TTSError(f"coqui: model directory {p} has no config.json")
    try:
        arch = str(json.loads(cfg.read_text()).get("model", ""))
    except (ValueError, AttributeError) as e:
        raise TTSError(f"coqui: {cfg} is not a valid model config: {e}") from e
    if "xtts" in arch.lower():
        return str(p), str(cfg)
    for name in COQUI_CHECKPOINTS:
        if (p / name).is_file():
            return str(p / name), str(cfg)
    steps = sorted(p.glob("checkpoint_*.pth"), key=lambda c: int(re.sub(r"\D", "", c.stem) or 0))
    if steps:
        return str(steps[-1]), str(cfg)
    raise TTSError(f"coqui: model directory {p} has no checkpoint ({', '.join(COQUI_CHECKPOINTS)} or checkpoint_<step>.pth)")


class CoquiBackend:
    """Coqui TTS (``TTS.api.TTS``), the production backend, e.g. ``tts_models/multilingual/multi-dataset/xtts_v2``
    on GPU, or a local model (checkpoint + ``config.json``, see ``coqui_local_model``), loaded the way Coqui's own
    ``TTS(model_path=..., config_path=...)`` loads one. Voices are the model's built-in speakers (or those given);
    ``language`` is required by multilingual models (XTTS). ``length_scale`` maps to XTTS ``speed``
    (1/length_scale), to VITS-style models' ``length_scale``, and otherwise to a time stretch.

    ``seed``: the sampling noise (VITS ``inference_noise_scale``, XTTS's GPT sampling) is drawn from a torch
    generator seeded from (seed, text, voice, length_scale), so a row is reproducible; ``None`` leaves torch's
    global RNG alone.
    """

    name = "coqui"

    def __init__(self, model_name: str, speakers: list[str] | None = None, language: str | None = None,
                 device: str = "cpu", seed: int | None = 0):
        try:
            from TTS.api import TTS
        except ImportError as e:
            raise TTSError(
                f"coqui: the Coqui TTS package is not installed; `pip install {COQUI_PIN}` "
                f"(it must not replace the pinned torch) to use backend 'coqui' ({e})"
            ) from e
        local = coqui_local_model(model_name)
        try:
            if local:
                tts = TTS(model_path=local[0], config_path=local[1], progress_bar=False)
            else:
                tts = TTS(model_name, progress_bar=False)
            self.tts = tts.to(device)
        except Exception as e:
            raise TTSError(f"coqui: cannot load model {model_name!r} on {device}: {type(e).__name__}: {e}") from e
        if self.tts.synthesizer is None or getattr(self.tts.synthesizer, "tts_model", None) is None:
            raise TTSError(f"coqui: {model_name!r} is not a text-to-speech model")
        self.model_name = model_name
        self.local = local is not None
        self.language = language
        self.device = device
        self.seed = seed
        self._lock = threading.Lock()
        model_speakers = list(self.tts.speakers or []) if self.tts.is_multi_speaker else []
        if speakers:
            if not model_speakers:
                raise TTSError(f"coqui: model {model_name} is single-speaker; tts.voices must be left at the default")
            unknown = [s for s in speakers if s not in model_speakers]
            if unknown:
                raise TTSError(f"coqui: model {model_name} has no speaker(s) {unknown}; it has e.g. {model_speakers[:5]}")
            self._voices = list(dict.fromkeys(speakers))
        else:
            self._voices = model_speakers
        self.multi_speaker = bool(self._voices)
        if self.tts.is_multi_lingual:
            if not language:
                raise TTSError(f"coqui: model {model_name} is multilingual; give a language (e.g. 'en')")
            langs = self.tts.languages or []
            if langs and language not in langs:
                raise TTSError(f"coqui: model {model_name} does not support language {language!r}; it has {langs}")
        else:
            self.language = None

    @classmethod
    def from_config(cls, cfg: TTSConfig, language: str | None = None) -> "CoquiBackend":
        """``tts.voices`` select model speakers (the default list: all of them); ``tts.coqui_language`` falls back to
        the profile ``language`` for multilingual models."""
        return cls(cfg.coqui_model, speakers=configured_voices(cfg), language=cfg.coqui_language or language,
                   device=cfg.device)

    def voices(self) -> list[str]:
        return self._voices or ["default"]

    def sample_rate(self, voice: str | None = None) -> int:
        return int(self.tts.synthesizer.output_sample_rate)

    def _check_vocabulary(self, model, text: str) -> None:
        """Coqui's character tokenizers drop characters they do not know (with a log line) and the model then speaks
        pads and blanks: raise instead when nothing but punctuation is left (e.g. Japanese text, English model)."""
        tok = getattr(model, "tokenizer", None)
        chars = getattr(tok, "characters", None)
        if chars is None or not hasattr(tok, "text_to_ids"):  # XTTS and other BPE tokenizers
            return
        try:
            ids = tok.text_to_ids(text, language=self.language)
            special = {chars.pad, chars.blank, chars.bos, chars.eos, *(chars.punctuations or "")}
            spoken = [i for i in ids if chars.id_to_char(i) not in special]
        except Exception as e:
            raise TTSError(f"coqui: cannot tokenize {text[:60]!r}: {type(e).__name__}: {e}") from e
        if not spoken:
            raise TTSError(f"coqui: no character of {text[:60]!r} is in the model's vocabulary")

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        import torch

        t = check_text(text, self.name)
        ls = check_length_scale(length_scale, self.name)
        speaker = None
        if self.multi_speaker:
            speaker = voice or self._voices[0]
            if speaker not in self._voices:
                raise TTSError(f"coqui: unknown voice {speaker!r}; available: {', '.join(self._voices[:10])} ...")
        elif voice not in (None, "default"):
            raise TTSError(f"coqui: model {self.model_name} is single-speaker; voice must be None or 'default'")
        synth = self.tts.synthesizer
        model = synth.tts_model
        self._check_vocabulary(model, t)
        kwargs = {}
        stretch = 1.0
        is_xtts = "xtts" in self.model_name.lower() or type(model).__name__.lower() == "xtts"
        if is_xtts:
            kwargs["speed"] = 1.0 / ls
        elif ls != 1.0 and not hasattr(model, "length_scale"):
            stretch = ls
        cuda = [torch.cuda.current_device()] if self.device.startswith("cuda") and torch.cuda.is_available() else []
        try:
            with self._lock, torch.random.fork_rng(devices=cuda, enabled=self.seed is not None):
                if self.seed is not None:
                    torch.manual_seed(zlib.crc32(f"{self.seed}|{speaker}|{ls!r}|{t}".encode()))
                saved = getattr(model, "length_scale", None)
                if not is_xtts and saved is not None:
                    model.length_scale = ls * saved
                try:
                    wav = self.tts.tts(text=t, speaker=speaker, language=self.language, **kwargs)
                finally:
                    if not is_xtts and saved is not None:
                        model.length_scale = saved
        except Exception as e:
            raise TTSError(f"coqui: synthesis failed for {t[:60]!r}: {type(e).__name__}: {e}") from e
        sr = int(synth.output_sample_rate)
        audio = np.asarray(wav, dtype=np.float32).reshape(-1)
        if stretch != 1.0 and audio.size:
            import librosa

            audio = librosa.effects.time_stretch(audio, rate=1.0 / stretch)
        return check_audio(audio, sr, f"coqui[{speaker or 'default'}]", t), sr
