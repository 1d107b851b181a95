"""Frozen Whisper encoders whose outputs the adapter is trained on: CTranslate2 (embedded) or transformers."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.core.audio import SAMPLE_RATE
from pipeline.core.config import TrainConfig
from pipeline.core.model_cache import EMBEDDED_PREFIX, resolve

FRAME_HZ = 50  # Whisper encoder frames per second


class CT2WhisperEncoder:
    """Whisper encoder in CTranslate2 (the embedded default): faster-whisper features -> encoder output."""

    def __init__(self, ref: str, compute_type: str = "int8", threads: int = 2, device: str = "cpu",
                 window_s: float | None = None):
        from faster_whisper import WhisperModel

        self.wm = WhisperModel(resolve(ref), device=device, compute_type=compute_type, cpu_threads=threads)
        self.dim = None
        self.window_s = window_s

    def encode(self, audios: list[np.ndarray], trim: bool = True, fixed_window_s: float | None = None) -> list[np.ndarray]:
        """Encoder outputs per clip: its own frames (``trim``) or the whole window [window frames, D];
        ``fixed_window_s``: every clip in a window of that length (cut to it), whatever ``window_s`` says."""
        from faster_whisper.audio import pad_or_trim

        out: list = [None] * len(audios)
        by_window: dict[int, list[int]] = {}
        for i, a in enumerate(audios):
            mel = min(3000, int(round(100 * fixed_window_s))) if fixed_window_s else window_frames(len(a), self.window_s)
            by_window.setdefault(mel, []).append(i)
        for mel, idx in by_window.items():
            feats = np.stack([pad_or_trim(self.wm.feature_extractor(audios[i]), mel) for i in idx]).astype(np.float32)
            enc = np.asarray(self.wm.encode(feats), dtype=np.float32)  # [B, mel / 2, D]
            for i, o in zip(idx, enc):
                out[i] = o[: n_frames(audios[i])] if trim else o
        return out


def window_frames(n_samples: int, window_s: float | None) -> int:
    """Log-mel frames (100 Hz) of the encoder window of a clip: 3000 (30 s) without ``window_s``, else the first
    multiple of ``window_s`` that holds the clip + 1 s, at most 3000."""
    if not window_s:
        return 3000
    dur = n_samples / SAMPLE_RATE + 1.0
    return int(min(3000, round(100 * window_s * math.ceil(dur / window_s))))


class HFWhisperEncoder:
    """Whisper encoder from transformers (production: a hub name or a local directory; frozen)."""

    def __init__(self, ref: str | None = None, device: str = "cpu", dtype: str = "float32", *, model=None, feature_extractor=None):
        import torch
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.torch, self.device = torch, device
        self.dtype = getattr(torch, dtype)
        self.fe = feature_extractor or WhisperFeatureExtractor.from_pretrained(ref)
        enc = model if model is not None else WhisperModel.from_pretrained(ref, dtype=self.dtype).get_encoder()
        self.enc = enc.to(device=device, dtype=self.dtype).eval().requires_grad_(False)

    def encode(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        x = self.fe(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with self.torch.no_grad():
            out = self.enc(x.to(self.device, self.dtype)).last_hidden_state.float().cpu().numpy()
        return [o[: n_frames(a)] for o, a in zip(out, audios)]


def n_frames(audio: np.ndarray) -> int:
    """Encoder frames that cover a clip (the rest of Whisper's 30 s window is padding)."""
    return max(1, min(1500, math.ceil(len(audio) / SAMPLE_RATE * FRAME_HZ)))


def load_encoder(cfg: TrainConfig):
    if cfg.encoder.startswith(EMBEDDED_PREFIX) or (Path(cfg.encoder).is_dir() and (Path(cfg.encoder) / "model.bin").exists()):
        return CT2WhisperEncoder(cfg.encoder, cfg.encoder_compute_type, cfg.threads, "cuda" if cfg.device.startswith("cuda") else "cpu",
                                 cfg.encoder_window_s)
    return HFWhisperEncoder(cfg.encoder, cfg.device, cfg.dtype)
