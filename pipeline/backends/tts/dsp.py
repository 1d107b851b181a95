"""Audio augmentation for synthesised speech: ``loudness_normalize`` (ITU-R BS.1770) and ``pitch_shift``."""
from __future__ import annotations

import numpy as np

from pipeline.backends.tts.base import SILENCE_PEAK


def loudness_normalize(audio: np.ndarray, sr: int, target_lufs: float = -23.0, peak: float = 0.99) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness (ITU-R BS.1770, pyloudnorm); the gain is lowered if needed so
    no sample exceeds ``peak``. Clips shorter than one 400 ms gating block are measured by RMS instead."""
    import pyloudnorm as pyln

    a = np.asarray(audio, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.max(np.abs(a)) < SILENCE_PEAK:
        raise ValueError("loudness_normalize: audio is empty, silent or not finite")
    if a.size >= int(0.4 * sr) + 1:
        loudness = pyln.Meter(sr).integrated_loudness(a)
    else:
        loudness = 20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-12) - 0.691
    if not np.isfinite(loudness):  # every block gated out: fall back to RMS
        loudness = 20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-12) - 0.691
    gain = 10 ** ((target_lufs - loudness) / 20)
    top = np.max(np.abs(a)) * gain
    if top > peak:
        gain *= peak / top
    return (a * gain).astype(np.float32)


def pitch_shift(audio: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping duration (librosa phase vocoder + resampling)."""
    a = np.asarray(audio, dtype=np.float32)
    if semitones == 0:
        return a.copy()
    import librosa

    return np.clip(librosa.effects.pitch_shift(a, sr=sr, n_steps=float(semitones)), -1.0, 1.0).astype(np.float32)
