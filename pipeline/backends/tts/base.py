"""What every TTS backend shares: the ``TTSBackend`` protocol, ``TTSError``, and the input/output checks.

Every backend returns mono float32 audio in [-1, 1] and its sample rate, and raises ``TTSError`` when synthesis
fails or the result is empty, silent or not finite (``check_audio``). ``check_text`` and ``check_length_scale``
validate a call's inputs; ``configured_voices`` tells a backend whether ``tts.voices`` was left at its default.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.core.config import TTSConfig

#: Audio whose peak stays below this is "silent" (about -80 dBFS).
SILENCE_PEAK = 1e-4


class TTSError(RuntimeError):
    pass


@runtime_checkable
class TTSBackend(Protocol):
    name: str

    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]: ...


def check_audio(audio: np.ndarray, sr: int, who: str, text: str) -> np.ndarray:
    """Validate synthesised audio and return it as mono float32 clipped to [-1, 1]; raise TTSError otherwise."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1 if a.shape[1] < a.shape[0] else 0)
    a = a.reshape(-1)
    snippet = text if len(text) <= 60 else text[:57] + "..."
    if a.size == 0:
        raise TTSError(f"{who}: synthesis returned no audio for {snippet!r}")
    if not np.all(np.isfinite(a)):
        raise TTSError(f"{who}: synthesis returned non-finite samples (NaN/inf) for {snippet!r}")
    if float(np.max(np.abs(a))) < SILENCE_PEAK:
        raise TTSError(f"{who}: synthesis returned silence ({a.size / sr:.2f} s) for {snippet!r}")
    if sr <= 0:
        raise TTSError(f"{who}: invalid sample rate {sr}")
    return np.clip(a, -1.0, 1.0)


def check_text(text: str | None, who: str) -> str:
    """The stripped text; TTSError when there is nothing speakable (empty, blank or punctuation only)."""
    t = (text or "").strip()
    if not t or not any(ch.isalnum() for ch in t):
        raise TTSError(f"{who}: nothing to synthesise (empty text {text!r})")
    return t


def check_length_scale(length_scale: float, who: str) -> float:
    if not (np.isfinite(length_scale) and 0.25 <= length_scale <= 4.0):
        raise TTSError(f"{who}: length_scale {length_scale} outside [0.25, 4]")
    return float(length_scale)


def configured_voices(cfg: TTSConfig) -> list[str] | None:
    """``cfg.voices``, or ``None`` when left at the default list (which names Piper voices): then a non-Piper backend
    uses its own default voices."""
    default_voices = TTSConfig.model_fields["voices"].default_factory()
    return None if cfg.voices == default_voices else cfg.voices


def reject_embedded(voices: list[str] | None, message: str) -> None:
    """TTSError ``message`` naming the ``embedded:`` refs among ``voices`` (model refs given as voice names)."""
    bad = [v for v in voices or [] if v.startswith("embedded:")]
    if bad:
        raise TTSError(f"{message}, not {bad}")
