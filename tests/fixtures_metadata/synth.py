"""Known-truth test audio for the metadata estimators (pipeline.backends.metadata), synthesised at run time (nothing binary is committed).

Used by tests/{backends,stages}/test_metadata.py and bench/bench_metadata.py. Speech comes from espeak-ng (male default
and female ``+fN`` variants) and from the embedded Piper voice ``en_US-joe-medium`` (male); everything
is returned as mono float32 at 16 kHz.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import soundfile as sf

SR = 16000

SENTENCES = [
    "Please tell me what the weather will be like in Boston tomorrow morning.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Could you summarise this paragraph in two short sentences for me?",
    "Write a polite email to my landlord about the broken heating system.",
    "How many minutes does it take to boil an egg at high altitude?",
    "Translate the following phrase into French and explain the grammar.",
]

ESPEAK_MALE = ["en-us", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-us+m5", "en-us+m6", "en-us+m7"]
ESPEAK_FEMALE = ["en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en-us+f5",
                 "en-us+Alicia", "en-us+Andrea", "en-us+Annie", "en-us+anika", "en-us+aunty",
                 "en-us+belinda", "en-us+linda", "en-us+steph"]
PIPER_MALE = "embedded:piper-en_US-joe-medium"


def _resample(audio: np.ndarray, sr: int) -> np.ndarray:
    if sr == SR:
        return audio.astype(np.float32)
    import librosa

    return librosa.resample(audio.astype(np.float32), orig_sr=sr, target_sr=SR, res_type="soxr_hq").astype(np.float32)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def espeak(text: str, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech at 16 kHz (espeak-ng writes 22.05 kHz WAV)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-w", out, text], check=True, capture_output=True, timeout=60)
        audio, sr = sf.read(out, dtype="float32", always_2d=True)
    return _resample(audio[:, 0], sr)


_PIPER = {}


def piper(text: str, ref: str = PIPER_MALE) -> np.ndarray:
    """Piper speech at 16 kHz (the embedded voice is 22.05 kHz)."""
    if ref not in _PIPER:
        from piper import PiperVoice

        from pipeline.core.model_cache import resolve

        _PIPER[ref] = PiperVoice.load(resolve(ref))
    voice = _PIPER[ref]
    chunks = list(voice.synthesize(text))
    audio = np.concatenate([c.audio_float_array.astype(np.float32) for c in chunks])
    return _resample(audio, chunks[0].sample_rate)


def trim(audio: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """Drop leading/trailing silence (TTS pads both ends)."""
    import librosa

    _, (a, b) = librosa.effects.trim(audio, top_db=top_db, frame_length=512, hop_length=128)
    return audio[a:b]


def active_mask(audio: np.ndarray, frame: int = 320, rel_db: float = -40.0) -> np.ndarray:
    """Per-sample mask of 20 ms frames within ``rel_db`` of the loudest frame (speech-active part)."""
    n = len(audio) // frame
    fr = audio[: n * frame].reshape(n, frame).astype(np.float64)
    e = 10 * np.log10(np.mean(fr**2, axis=1) + 1e-20)
    act = e > e.max() + rel_db
    mask = np.repeat(act, frame)
    return np.concatenate([mask, np.zeros(len(audio) - len(mask), bool)])


def add_white_noise(clean: np.ndarray, snr_db: float, seed: int = 0, active_only: bool = True) -> np.ndarray:
    """Mix white Gaussian noise at ``snr_db``.

    With ``active_only`` the speech power is measured over the speech-active frames (the usual
    "active speech level" definition); otherwise over the whole clip.
    """
    rng = np.random.default_rng(seed)
    x = clean.astype(np.float64)
    p_s = np.mean(x[active_mask(clean)] ** 2) if active_only else np.mean(x**2)
    noise = rng.standard_normal(len(x))
    noise *= np.sqrt(p_s / 10 ** (snr_db / 10)) / np.sqrt(np.mean(noise**2))
    y = x + noise
    peak = np.max(np.abs(y))
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


def tone(f0: float, dur: float = 2.0, harmonics: int = 1, amp: float = 0.3) -> np.ndarray:
    """Sine (harmonics=1) or a harmonic complex with 1/k amplitudes at fundamental ``f0``."""
    t = np.arange(int(dur * SR)) / SR
    y = sum((1.0 / k) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, harmonics + 1) if k * f0 < SR / 2)
    y = y / np.max(np.abs(y)) * amp
    return y.astype(np.float32)


def speech_set(voices: list[str] | None = None, n_sentences: int = len(SENTENCES), trim_silence: bool = True):
    """[(voice, gender, sentence_index, audio16k)] for espeak voices and/or ``"piper"``.

    Gender truth: the Piper voice and the espeak ``en-us`` / ``+mN`` variants are male, the espeak
    female variants (ESPEAK_FEMALE) are female.
    """
    voices = voices if voices is not None else ["piper", *ESPEAK_MALE, *ESPEAK_FEMALE]
    out = []
    for v in voices:
        gender = "female" if v in ESPEAK_FEMALE else "male"
        for i, s in enumerate(SENTENCES[:n_sentences]):
            a = piper(s) if v == "piper" else espeak(s, v)
            out.append((v, gender, i, trim(a) if trim_silence else a))
    return out
