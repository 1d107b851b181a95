"""Pytest fixtures shared by tests/backends/test_metadata.py and tests/stages/test_metadata.py: synthesised
speech per voice and espeak-ng clips at known speaking rates (each built once per session, however many
test modules import the fixture)."""
from __future__ import annotations

import shutil
from functools import lru_cache

import numpy as np
import pytest

from tests.fixtures_metadata import synth as S

SR = S.SR
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

MALE_ESPEAK = ["en-us", "en-us+m3", "en-us+m7"]
FEMALE_ESPEAK = ["en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en-us+f5", "en-us+Annie", "en-us+linda"]

RATE_TEXTS = ["Please tell me what the weather will be like in Boston tomorrow morning",
              "The quick brown fox jumps over the lazy dog near the river bank"]
RATES_WPM = (120, 170, 220)


@lru_cache(maxsize=None)
def _speech() -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for v, _, _, a in S.speech_set(["piper", *MALE_ESPEAK, *FEMALE_ESPEAK], n_sentences=2):
        out.setdefault(v, []).append(a)
    return out


@pytest.fixture(scope="session")
def speech() -> dict[str, list[np.ndarray]]:
    """voice -> two trimmed 16 kHz utterances (sentences 0 and 1)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return _speech()


def espeak_at(text: str, voice: str, wpm: int) -> np.ndarray:
    import os
    import subprocess
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", out, text], check=True, capture_output=True)
        a, sr = sf.read(out, dtype="float32")
    return S._resample(a, sr)


@lru_cache(maxsize=None)
def _rate_clips() -> dict:
    return {(v, w, k): espeak_at(t, v, w) for v in ("en-us", "en-us+f3") for w in RATES_WPM
            for k, t in enumerate(RATE_TEXTS)}


@pytest.fixture(scope="session")
def rate_clips() -> dict:
    """(voice, wpm, sentence) -> 16 kHz espeak-ng clip at that rate, untrimmed (espeak pads both ends)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return _rate_clips()
