"""Shared fixtures: a small real corpus made with espeak-ng + ffmpeg, and run helpers."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent

SENTENCES = [
    ("The library opens at nine and closes at five on weekdays.", "en-us", "male"),
    ("Please bring a warm jacket because the mountain trail gets cold at night.", "en-us+f3", "female"),
    ("Our train to the coast leaves from platform four in twenty minutes.", "en-gb", "male"),
    ("She planted tomatoes, beans and sunflowers in the garden last spring.", "en-us+f4", "female"),
]


def espeak(text: str, voice: str, path: Path, speed: int = 160) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A folder + manifest with good files in several formats and every kind of bad file."""
    d = tmp_path_factory.mktemp("corpus")
    a = d / "audio"
    a.mkdir()
    raw = [espeak(t, v, d / f"raw{i}.wav") for i, (t, v, _) in enumerate(SENTENCES)]
    ffmpeg(raw[0], a / "s0.wav", "-ar", "44100", "-ac", "2")  # stereo 44.1 kHz
    ffmpeg(raw[1], a / "s1.mp3", "-ar", "22050")
    ffmpeg(raw[2], a / "s2.m4a")
    ffmpeg(raw[3], a / "s3.ogg")
    # a 40 s file: the four sentences twice with 1 s pauses -> must be cut into <= 30 s segments
    parts = []
    for r in raw + raw:
        x, sr = sf.read(r, dtype="float32")
        parts += [x, np.zeros(sr, dtype=np.float32)]
    sf.write(a / "long.flac", np.concatenate(parts), sr)
    (a / "empty.wav").write_bytes(b"")
    (a / "corrupt.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    sf.write(a / "header_only.wav", np.zeros(0, dtype=np.float32), 16000)
    sf.write(a / "silence.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    sf.write(a / "short.wav", sf.read(raw[0], dtype="float32")[0][: int(0.5 * sr)], sr)  # 0.5 s < min_duration
    (a / "notes.txt").write_text("not audio")
    for r in raw:
        r.unlink()
    rows = []
    for f, (t, v, g) in zip(["s0.wav", "s1.mp3", "s2.m4a", "s3.ogg"], SENTENCES):
        rows.append({"path": f"audio/{f}", "text": t, "speaker": v, "labels": {"gender": g}})
    for f in ["long.flac", "empty.wav", "corrupt.mp3", "header_only.wav", "silence.wav", "short.wav", "notes.txt"]:
        rows.append({"path": f"audio/{f}"})
    (d / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    texts = [
        {"instruction": "Name three colours of the rainbow.", "input": "", "output": "Red, orange and yellow."},
        {"instruction": "Give me one tip for sleeping better.", "input": "", "output": "Keep a regular bedtime."},
        {"instruction": "Open https://example.com and summarise it.", "input": "", "output": "I cannot browse."},
    ]
    (d / "instructions.jsonl").write_text("\n".join(json.dumps(t) for t in texts) + "\n")
    return d


EXPECTED_REJECTS = {  # file -> ingest reject reason
    "audio/empty.wav": "empty",
    "audio/corrupt.mp3": "corrupt",
    "audio/header_only.wav": "zero_length",
    "audio/silence.wav": "silent",
    "audio/short.wav": "too_short",
    "audio/notes.txt": "not_audio",
}


@pytest.fixture(scope="session")
def test_profile(corpus):
    from pipeline.core.config import load_profile

    return load_profile("en", input=str(corpus / "manifest.jsonl"), **{
        "shard_size": 4, "tts.input": str(corpus / "instructions.jsonl"), "llm.max_tokens": 120, "llm.retries": 1})


def env_for_subprocess() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env
