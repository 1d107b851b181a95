"""GrassRun: the DeSTA run's examples and split under <output_dir>/<lang>/train/grass/, with the GRASS model,
its encoder-output cache and digest; the first two steps, prepare and compute_features."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from pipeline.core.config import Profile
from pipeline.train.common import TrainError, torch_module
from pipeline.train.data import Example, decode_audio
from pipeline.train.grass.config import FORMAT, TRAIN_OVERRIDES, GrassConfig, grass_config
from pipeline.train.encoders import CT2WhisperEncoder
from pipeline.train.grass.convert import is_ct2
from pipeline.train.grass.model import GrassModel
from pipeline.train.run import TrainRun, clear_outputs
from pipeline.train.run import prepare as desta_prepare


class GrassRun(TrainRun):
    """<output_dir>/<lang>/train/grass/: the DeSTA run's examples and split, GRASS model and outputs."""

    def __init__(self, profile: Profile, output_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 overwrite: bool = False, grass: GrassConfig | dict | None = None, **overrides):
        super().__init__(profile, output_dir, data_dir, overwrite=False)
        self.grass = grass_config(profile, grass, **overrides)
        self.cfg = profile.train.model_copy(update={k: getattr(self.grass, k) for k in TRAIN_OVERRIDES
                                                   if getattr(self.grass, k) is not None})
        self.dir = self.dir / "grass"
        self.features_dir = self.dir / "features"
        self.ckpt_dir = self.dir / "checkpoints"
        if overwrite:  # encoder outputs are a content-addressed cache: kept (with the time they took)
            clear_outputs(self.dir, self.ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._model: GrassModel | None = None
        self._tuned = False  # the in-memory decoder is no longer the pretrained one
        self._ct2 = None  # CTranslate2 encoder (grass.encoder_backend ctranslate2)

    @property
    def language(self) -> str:
        return self.grass.language or self.profile.language

    def whisper_id(self) -> str:
        """The model reference; for a local directory also its config and weight files (size, mtime)."""
        ref = self.grass.whisper
        p = Path(ref)
        if not p.is_dir():
            return ref
        h = hashlib.sha1((p / "config.json").read_bytes() if (p / "config.json").exists() else b"")
        for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return f"{p.resolve()}#{h.hexdigest()[:12]}"

    def config_digest(self) -> str:
        d = {"format": FORMAT, "whisper": self.whisper_id(), "language": self.language, "task_token": self.grass.task_token,
             "use_prompt": self.grass.use_prompt, **({} if self.grass.encoder_backend == "transformers" else
                                                     {"encoder": ["ctranslate2", self.cfg.encoder_compute_type, self.grass.encoder_window_s]})}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def model(self) -> GrassModel:
        """The Whisper model with its pretrained weights (one load per run object)."""
        if self._model is None:
            torch = torch_module()
            torch.set_num_threads(self.cfg.threads)
            self._model = GrassModel(self.grass.whisper, self.cfg, self.grass, self.language)
        return self._model

    # -- encoder output cache ------------------------------------------------------------------------------
    def state_key(self, e: Example) -> str:
        enc = "" if self.grass.encoder_backend == "transformers" else f"ct2:{self.cfg.encoder_compute_type}:{self.grass.encoder_window_s:g}"
        return hashlib.sha1(f"{self.whisper_id()}\0{enc}\0{e.audio_key}".encode()).hexdigest()[:20]

    def encode(self, model: GrassModel, waves: list[np.ndarray]):
        """Frozen encoder outputs [B, frames, d] (torch, float32) of 16 kHz clips, from grass.encoder_backend."""
        if self.grass.encoder_backend == "transformers":
            return model.encode(waves)
        if self._ct2 is None:
            if not is_ct2(self.grass.whisper):
                raise TrainError(f"grass.encoder_backend ctranslate2 needs a CTranslate2 whisper, not {self.grass.whisper!r}")
            self._ct2 = CT2WhisperEncoder(self.grass.whisper, self.cfg.encoder_compute_type, self.cfg.threads,
                                          "cuda" if self.cfg.device.startswith("cuda") else "cpu")
        out = self._ct2.encode(waves, trim=False, fixed_window_s=self.grass.encoder_window_s)  # every clip in one window
        return model.torch.from_numpy(np.stack(out)).to(model.device)

    def states(self, model: GrassModel, examples: list[Example]):
        """Frozen encoder outputs of the examples' clips [B, 1500, d] (from the cache, else computed)."""
        torch = model.torch
        keys = [self.state_key(e) for e in examples]
        have = {k: np.load(self.feature_path(k)) for k in set(keys) if self.feature_path(k).exists()}
        todo = sorted({k for k in keys if k not in have})
        if todo:
            audio = self.audio()
            by_key = {self.state_key(e): e.audio_key for e in examples}
            waves = [decode_audio(audio[by_key[k]]["audio"], min(self.cfg.max_audio_s, 30.0)) for k in todo]
            for k, s in zip(todo, self.encode(model, waves)):
                have[k] = s.cpu().numpy().astype(np.float16)
                if self.grass.cache_encoder:
                    self.features_dir.mkdir(parents=True, exist_ok=True)
                    tmp = self.features_dir / f".{k}.tmp-{os.getpid()}.npy"
                    np.save(tmp, have[k])
                    tmp.replace(self.feature_path(k))
        return torch.from_numpy(np.stack([have[k] for k in keys]).astype(np.float32)).to(model.device)


def prepare(gr: GrassRun) -> dict:
    """The DeSTA run's examples and split (pipeline.train.run.prepare) -> grass/split.json."""
    return desta_prepare(gr)


def compute_features(gr: GrassRun, batch: int = 8) -> dict:
    """Frozen Whisper encoder outputs of every clip of the examples, cached (no-op when cache_encoder is off)."""
    t0 = time.time()
    if not gr.grass.cache_encoder:
        return {"clips": 0, "computed": 0, "seconds": 0.0, "cache": False}
    by_key: dict[str, Example] = {}
    for e in gr.examples():
        by_key.setdefault(gr.state_key(e), e)
    todo = [e for k, e in sorted(by_key.items()) if not gr.feature_path(k).exists()]
    if todo:
        model = gr.model()
        for i in range(0, len(todo), batch):
            gr.states(model, todo[i:i + batch])
        gr.timing("features", time.time() - t0)
    return {"clips": len(by_key), "computed": len(todo), "seconds": round(time.time() - t0, 1)}

