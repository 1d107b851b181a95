"""The benchmark corpus of bench_train.py, spoken by the tool's own TTS backends (the GRASS way).

Speakers: Kokoro-82M styles and style blends, Piper joe, espeak-ng voices x variants (male and female,
several English accent profiles), balanced by gender. Every utterance is a unique sentence (so no text of
the test speakers is ever heard in training) spoken at one of three speeds (length scale 1.45 / 1.0 / 0.7:
labels slow / normal / fast) and mixed with pink or white noise at one of four SNRs (none, 30 dB: label
clean; 10, 4 dB: label noisy). Labels are known by construction and written to the manifest
(``labels.gender``, ``labels.speed``, ``labels.noise``, plus the generation settings).

    python bench/train_corpus.py --out /tmp/bench_train/corpus     # build (cached: existing clips are kept)
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (backend, voice, gender): 24 female, 24 male speakers
FEMALE = [("kokoro", v, "female") for v in (
    "jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jf_alpha*0.5+jf_nezumi*0.5",
    "jf_gongitsune*0.5+jf_tebukuro*0.5", "jf_alpha*0.5+jf_tebukuro*0.5", "jf_nezumi*0.5+jf_gongitsune*0.5",
    "jf_alpha*0.7+jf_gongitsune*0.3", "jf_tebukuro*0.7+jf_nezumi*0.3")] + [("espeak-ng", v, "female") for v in (
    "en-us+f1", "en-us+f3", "en-us+f4", "en-us+f5", "en-gb+f1", "en-gb+f3", "en-gb+f4", "en-gb-scotland+f1",
    "en-gb-scotland+f5", "en-029+f3", "en-029+f4", "en-gb-x-rp+f5", "en-gb-x-gbclan+f1", "en-us+Annie")]
MALE = [("kokoro", "jm_kumo", "male"), ("kokoro", "jm_kumo*0.8+jf_alpha*0.2", "male"),
        ("piper", "embedded:piper-en_US-joe-medium", "male")] + [("espeak-ng", v, "male") for v in (
    "en-us", "en-us+m1", "en-us+m2", "en-us+m3", "en-us+m4", "en-gb", "en-gb+m1", "en-gb+m3", "en-gb+m5",
    "en-gb-scotland", "en-gb-scotland+m2", "en-029", "en-029+m4", "en-gb-x-rp", "en-gb-x-rp+m6", "en-gb-x-gbclan",
    "en-gb-x-gbclan+m7", "en-us+Mike", "en-gb+john", "en-us+Gene", "en-us+max")]
SPEEDS = {"slow": 1.45, "normal": 1.0, "fast": 0.7}  # TTS length scale per speed label
SNRS = [(None, "clean"), (30.0, "clean"), (10.0, "noisy"), (4.0, "noisy")]  # mixed SNR (dB) -> noise label

NAMES = ["Anna", "Peter", "Maria", "David", "Laura", "Thomas", "Sarah", "James", "Emma", "Daniel", "Olivia", "Samuel",
         "Grace", "Henry", "Lucy", "Oscar", "Nina", "Victor", "Ruth", "Felix"]
VERBS = ["carried", "painted", "found", "bought", "cleaned", "opened", "sold", "borrowed", "packed", "repaired",
         "counted", "hid", "washed", "moved", "lost", "ordered"]
OBJECTS = ["a wooden chair", "the red bicycle", "two heavy boxes", "an old clock", "the garden gate", "a blue kettle",
           "seven green bottles", "the kitchen table", "a paper lantern", "three warm blankets", "the broken radio",
           "a basket of apples", "the silver key", "a small boat", "the winter coats", "a box of candles"]
PLACES = ["near the river", "behind the library", "at the market", "in the village hall", "by the station",
          "on the top floor", "outside the bakery", "in the back garden", "at the harbour", "under the old bridge"]
TIMES = ["on Monday morning", "before lunch", "late at night", "last summer", "after the storm", "on a rainy Tuesday",
         "at half past six", "during the holidays", "early on Sunday", "this afternoon"]


def sentences(n: int, seed: int = 7) -> list[str]:
    """n unique sentences (name verb object place time), seeded."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out = []
    while len(out) < n:
        s = f"{rng.choice(NAMES)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)} {rng.choice(TIMES)}."
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def speakers() -> list[tuple[str, str, str]]:
    return FEMALE + MALE


def add_noise(x: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """Mix white or pink noise at ``snr_db`` relative to the speech power (None: unchanged)."""
    if snr_db is None:
        return x
    n = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink: 1/f power spectrum
        f = np.fft.rfft(n)
        f /= np.sqrt(np.maximum(np.arange(len(f)), 1))
        n = np.fft.irfft(f, len(x))
    p_speech = np.mean(x[np.abs(x) > 0.02 * np.abs(x).max()] ** 2)
    n *= np.sqrt(p_speech / 10 ** (snr_db / 10) / np.mean(n ** 2))
    return np.clip(x + n, -1, 1).astype(np.float32)


class Voices:
    """One backend object per TTS engine (the tool's pipeline.backends.tts classes), voices registered up front."""

    def __init__(self, spk: list[tuple[str, str, str]]):
        from pipeline.backends.tts.espeak import EspeakBackend
        from pipeline.backends.tts.kokoro import KokoroBackend
        from pipeline.backends.tts.piper import PiperBackend

        by = {b: [v for bb, v, _ in spk if bb == b] for b in ("kokoro", "espeak-ng", "piper")}
        self.b = {"kokoro": KokoroBackend(voices=by["kokoro"], threads=2), "espeak-ng": EspeakBackend(by["espeak-ng"]),
                  "piper": PiperBackend(by["piper"])}
        self.piper_name = {v: self.b["piper"].voices()[0] for v in by["piper"]}

    def say(self, backend: str, voice: str, text: str, length_scale: float) -> tuple[np.ndarray, int]:
        if backend == "piper":
            voice = self.piper_name[voice]
        return self.b[backend].synthesize(text, voice, length_scale)


def build(out: Path, per_speaker: int = 7, seed: int = 1234, log=print) -> Path:
    """Synthesise the corpus under ``out`` (clips already there are kept) -> out/manifest.jsonl."""
    import soundfile as sf

    from pipeline.backends.tts.dsp import loudness_normalize

    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    spk = speakers()
    texts = sentences(len(spk) * per_speaker)
    rows, todo = [], []
    for s, (backend, voice, gender) in enumerate(spk):
        for j in range(per_speaker):
            i = s * per_speaker + j
            speed = list(SPEEDS)[(s + j) % len(SPEEDS)]
            snr, noise = SNRS[(s * 3 + j) % len(SNRS)]
            path = audio_dir / f"spk{s:02d}_{j}.wav"
            row = {"path": f"audio/{path.name}", "text": texts[i], "speaker": f"{backend}:{voice}",
                   "labels": {"gender": gender, "speed": speed, "noise": noise, "tts_backend": backend, "tts_voice": voice,
                              "length_scale": SPEEDS[speed], "snr_db": snr}}
            rows.append(row)
            if not path.exists():
                todo.append((path, row, i))
    t0 = time.time()
    if todo:
        voices = Voices(spk)
        for k, (path, row, i) in enumerate(todo):
            lab = row["labels"]
            x, sr = voices.say(lab["tts_backend"], lab["tts_voice"], row["text"], lab["length_scale"])
            x = loudness_normalize(x, sr, target_lufs=-23.0 + np.random.default_rng(seed + i).uniform(-4, 4))
            x = np.concatenate([np.zeros(int(0.25 * sr), np.float32), x, np.zeros(int(0.25 * sr), np.float32)])
            x = add_noise(x, lab["snr_db"], np.random.default_rng(seed + i))
            tmp = path.with_name(f".{path.name}")
            sf.write(tmp, x, sr, subtype="PCM_16", format="WAV")
            tmp.replace(path)
            if (k + 1) % 50 == 0:
                log(f"corpus: {k + 1}/{len(todo)} clips, {time.time() - t0:.0f} s")
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = json.loads((out / "corpus.json").read_text()) if (out / "corpus.json").exists() else {}
    first = before.get("first_build_synth_s", before.get("synth_s")) if not todo else round(time.time() - t0, 1)
    (out / "corpus.json").write_text(json.dumps({"first_build_synth_s": first,
        "utterances": len(rows), "speakers": len(spk), "female": len(FEMALE), "male": len(MALE),
        "speeds": SPEEDS, "snrs": [s for s, _ in SNRS], "synth_s": round(time.time() - t0, 1), "synthesised": len(todo)}, indent=1))
    return out / "manifest.jsonl"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/bench_train/corpus")
    ap.add_argument("--per-speaker", type=int, default=7)
    a = ap.parse_args()
    print(build(Path(a.out), a.per_speaker))
