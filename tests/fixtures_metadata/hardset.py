"""A known-truth set for gender and F0 that is hard on purpose, generated at run time (no audio is committed).

Voices (gender truth from the espeak-ng variant file's own ``gender`` line, the Kokoro style name, the Piper
voice card, and samples/README.md for the human clips):

* espeak-ng ``en-us`` + variants, including the rough / creaky / breathy / whispered ones (f1, f2 and m1 carry
  ``roughness``; croak, grandma/grandpa flutter; whisper / whisperf; Annie, aunty, ... breathy ``voicing``);
* the embedded Kokoro styles (4 female ``jf_*``, 1 male ``jm_kumo``) speaking English through espeak-ng IPA;
* the embedded Piper voice ``joe`` (male);
* the human clips of samples/en (4 male LibriVox / CMU clips, 1 female ALSA announcer).

Each clip is used clean and mixed with white noise at 10 / 5 / 0 dB (:data:`SNRS`).

**F0 truth** (``f0_truth``): for an espeak-ng clip, the same text spoken by a *smooth twin* of its variant: the
variant file with ``roughness``, ``flutter``, ``breath``/``breathw`` and ``voicing`` removed, which espeak-ng
renders with the same timing and the same pitch contour (checked: identical sample counts; the smooth twin of
``pitch 200 200`` is flat within 1 %). The twin's frame-wise F0 is read with Praat's autocorrelation tracker
and kept only where a second, independent tracker (the YIN in pipeline.backends.metadata.pitch) agrees
within 3 % (so a truth frame is unambiguous). Clips ``+p<P>`` are spoken at espeak-ng pitch ``-p P`` (0..99).
Kokoro, Piper and the human clips have no F0 truth (they still count for gender).

Voices are split into two groups by a fixed rule (:func:`split`): ``dev`` (used to choose thresholds) and
``check`` (never used for fitting); the bench reports both.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.fixtures_metadata import synth as S

SR = S.SR
SNRS = (None, 10, 5, 0)  # None = clean
ROOT = Path(__file__).resolve().parents[2]

#: espeak-ng variants of en-us in the hard set (gender read from each variant file)
ESPEAK_VARIANTS = [
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "croak", "whisper", "grandpa", "Andy", "Gene", "Mike", "edward",
    "f1", "f2", "f3", "f4", "f5", "Annie", "Alicia", "Andrea", "anika", "aunty", "belinda", "linda", "steph",
    "grandma", "whisperf",
]
#: variants whose file has no ``gender`` line: gender by the (unambiguous) name
NAMED_MALE = ("grandpa", "Gene", "Mike", "edward")
KOKORO_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
HUMAN = {  # samples/en file -> gender (samples/README.md)
    "human_librivox_0870.flac": "male", "human_librivox_0890.mp3": "male", "human_librivox_0930.wav": "male",
    "human_cards_005.ogg": "male", "human_alsa_channels.wav": "female",
}
TEXTS = S.SENTENCES
_SMOOTH_DROP = re.compile(r"^\s*(roughness|flutter|breath|breathw|voicing)\b", re.I)


def split(voice: str) -> str:
    """``dev`` or ``check``: a fixed, content-free rule (a hash of the voice name), so nobody picks the split."""
    import hashlib

    return "dev" if int(hashlib.sha1(voice.encode()).hexdigest(), 16) % 2 == 0 else "check"


@functools.lru_cache(maxsize=None)
def espeak_data() -> Path:
    """espeak-ng's data folder (the one holding ``voices/!v``)."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"Data at:\s*(\S+)", out)
    if m and Path(m.group(1), "voices", "!v").is_dir():
        return Path(m.group(1))
    for p in ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
              "/usr/share/espeak-ng-data"):
        if Path(p, "voices", "!v").is_dir():
            return Path(p)
    raise FileNotFoundError("espeak-ng data folder not found")


def variant_gender(variant: str) -> str:
    if not variant or variant in NAMED_MALE:
        return "male"  # en-us itself is a male voice
    text = (espeak_data() / "voices" / "!v" / variant).read_text(errors="replace")
    m = re.search(r"^\s*gender\s+(\w+)", text, re.M)
    if not m or m.group(1).lower() not in ("male", "female"):
        raise ValueError(f"espeak-ng variant {variant} declares no gender")
    return m.group(1).lower()


@functools.lru_cache(maxsize=None)
def _twin_path() -> Path:
    """A private copy of espeak-ng's data with a smooth twin ``<variant>_smooth`` of every hard-set variant."""
    d = Path(tempfile.mkdtemp(prefix="espeak-twins-"))
    shutil.copytree(espeak_data(), d / "espeak-ng-data", symlinks=True)
    vdir = d / "espeak-ng-data" / "voices" / "!v"
    for v in ESPEAK_VARIANTS:
        src = (vdir / v).read_text(errors="replace").splitlines() if v else ["language variant", "gender male"]
        lines = [ln for ln in src if not _SMOOTH_DROP.match(ln)]
        lines = [f"name {v or 'default'}_smooth" if ln.strip().startswith("name ") else ln for ln in lines]
        (vdir / f"{v or 'default'}_smooth").write_text("\n".join(lines) + "\n")
    return d


def _espeak(text: str, voice: str, pitch: int | None, path: Path | None = None) -> np.ndarray:
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, "o.wav")
        cmd = ["espeak-ng", *([f"--path={path}"] if path else []), "-v", voice,
               *(["-p", str(pitch)] if pitch is not None else []), "-w", out, text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        a, sr = sf.read(out, dtype="float32", always_2d=True)
    return S._resample(a[:, 0], sr)


def espeak_pair(text: str, variant: str, pitch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(clip, its smooth twin), both 16 kHz, same length, untrimmed."""
    voice = f"en-us+{variant}" if variant else "en-us"
    a = _espeak(text, voice, pitch)
    b = _espeak(text, f"en-us+{variant or 'default'}_smooth", pitch, _twin_path())
    n = min(a.size, b.size)
    return a[:n], b[:n]


HOP_S = 0.01


def praat_track(x: np.ndarray, sr: int = SR, fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    """Frame-wise F0 (0 = unvoiced) on a 10 ms grid starting at t = 0 (Praat's autocorrelation method)."""
    import parselmouth

    p = parselmouth.Sound(x.astype(np.float64), sr).to_pitch_ac(time_step=HOP_S, pitch_floor=fmin,
                                                               pitch_ceiling=fmax)
    return on_grid(p.xs(), p.selected_array["frequency"], x.size / sr)


def on_grid(times: np.ndarray, f0: np.ndarray, dur: float) -> np.ndarray:
    """Resample a track (times in s, 0 = unvoiced) onto the 10 ms grid by nearest frame."""
    grid = np.arange(int(dur / HOP_S)) * HOP_S
    if len(times) == 0:
        return np.zeros(grid.size)
    idx = np.clip(np.searchsorted(times, grid), 1, len(times) - 1)
    left = np.abs(times[idx - 1] - grid) <= np.abs(times[idx] - grid)
    idx = np.where(left, idx - 1, idx)
    out = np.asarray(f0, dtype=np.float64)[idx]
    out[np.abs(times[idx] - grid) > HOP_S] = 0.0
    return np.nan_to_num(out)


def yin_grid(x: np.ndarray, sr: int = SR, fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    from pipeline.backends.metadata.pitch import YIN_HOP_S, yin_track

    f0, voiced = yin_track(x, sr, fmin, fmax)
    tau_max = int(np.ceil(sr / fmin))
    centre = (2 * tau_max + 2) / 2 / sr  # frame centre offset of yin_track's frames
    times = centre + np.arange(f0.size) * YIN_HOP_S
    return on_grid(times, np.where(voiced, f0, 0.0), x.size / sr)


def f0_truth(smooth: np.ndarray) -> np.ndarray:
    """Truth on the 10 ms grid from the smooth twin (0 = no truth: unvoiced or the two trackers disagree)."""
    a, b = praat_track(smooth), yin_grid(smooth)
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    ok = (a > 0) & (b > 0) & (np.abs(a - b) <= 0.03 * a)
    return np.where(ok, a, 0.0)


def f0_errors(est: np.ndarray, truth: np.ndarray) -> dict:
    """Gross (> 20 % off) and octave (ratio within 10 % of 1/2 or 2) errors over frames voiced in the truth AND
    the estimate, and the share of truth-voiced frames the estimate calls unvoiced."""
    n = min(est.size, truth.size)
    e, t = est[:n], truth[:n]
    both = (t > 0) & (e > 0)
    r = e[both] / t[both]
    return {"frames": int(both.sum()), "truth_frames": int((t > 0).sum()),
            "gross": int((np.abs(r - 1) > 0.2).sum()),
            "octave": int(((np.abs(r - 0.5) < 0.05) | (np.abs(r - 2.0) < 0.2)).sum()),
            "missed": int(((t > 0) & (e <= 0)).sum())}


# ---- the clips ------------------------------------------------------------------------------------------
def espeak_items(n_texts: int = 2, pitches: tuple = (None,)) -> list[dict]:
    """[{voice, family, gender, text, pitch, audio, smooth}] for every hard-set espeak-ng variant."""
    out = []
    for v in ESPEAK_VARIANTS:
        g = variant_gender(v)
        for p in pitches:
            for k, t in enumerate(TEXTS[:n_texts]):
                a, s = espeak_pair(t, v, p)
                name = f"espeak:{v or 'default'}" + (f"+p{p}" if p is not None else "")
                out.append({"voice": name, "family": "espeak", "gender": g, "text": k, "audio": a, "smooth": s})
    return out


def kokoro_items(n_texts: int = 2) -> list[dict]:
    from pipeline.backends.tts.kokoro import KokoroBackend

    be = KokoroBackend(voices=KOKORO_VOICES, threads=1)
    out = []
    for v in KOKORO_VOICES:
        for k, t in enumerate(TEXTS[:n_texts]):
            a, sr = be.synthesize(t, v)
            out.append({"voice": f"kokoro:{v}", "family": "kokoro", "gender": be.gender(v), "text": k,
                        "audio": S._resample(np.asarray(a, np.float32), sr), "smooth": None})
    return out


def piper_items(n_texts: int = 2) -> list[dict]:
    return [{"voice": "piper:joe", "family": "piper", "gender": "male", "text": k, "audio": S.piper(t), "smooth": None}
            for k, t in enumerate(TEXTS[:n_texts])]


def human_items() -> list[dict]:
    from pipeline.core.audio import load

    out = []
    for f, g in HUMAN.items():
        p = ROOT / "samples" / "en" / "audio" / f
        if not p.exists():
            continue
        out.append({"voice": f"human:{f.split('.')[0]}", "family": "human", "gender": g, "text": 0,
                    "audio": np.asarray(load(p, SR), np.float32), "smooth": None})
    return out


def with_noise(items: list[dict], snrs=SNRS) -> list[dict]:
    """Every item clean and at each SNR (white noise over the speech-active frames; seeded by position)."""
    out = []
    for n, it in enumerate(items):
        for s in snrs:
            a = it["audio"] if s is None else S.add_white_noise(it["audio"], s, seed=7919 * n + int(s))
            out.append({**it, "snr": s, "audio": a})
    return out


def manifest(items: list[dict]) -> str:
    """A JSON summary of the set (voices, genders, counts): what the bench prints with its results."""
    voices: dict = {}
    for it in items:
        voices.setdefault(it["voice"], {"gender": it["gender"], "family": it["family"], "n": 0})["n"] += 1
    return json.dumps(voices, indent=1)


# ---- F0 trackers on the 10 ms grid (0 = unvoiced), for the bench's comparison ------------------------------
def track_yin(x, sr=SR, fmin=60.0, fmax=400.0):
    return yin_grid(x, sr, fmin, fmax)


def track_praat(x, sr=SR, fmin=60.0, fmax=400.0):
    return praat_track(x, sr, fmin, fmax)


def track_pyin(x, sr=SR, fmin=60.0, fmax=400.0):
    import librosa

    f, v, _ = librosa.pyin(x, fmin=fmin, fmax=fmax, sr=sr, frame_length=1024, hop_length=int(HOP_S * sr), center=True)
    return on_grid(np.arange(f.size) * HOP_S, np.where(v, np.nan_to_num(f), 0.0), x.size / sr)


_SWIFT = {}


def track_swift(x, sr=SR, fmin=60.0, fmax=400.0):
    from swift_f0 import SwiftF0

    det = _SWIFT.setdefault("d", SwiftF0(threads=1))
    r = det.detect(x, sr, fmin=fmin, fmax=fmax)
    return on_grid(r.timestamps, np.where(r.confidence >= 0.5, r.pitch_hz, 0.0), x.size / sr)


def track_crepe_tiny(x, sr=SR, fmin=60.0, fmax=400.0):
    import torch
    import torchcrepe

    f, p = torchcrepe.predict(torch.tensor(x[None].astype(np.float32)), sr, hop_length=int(HOP_S * sr), fmin=fmin,
                              fmax=fmax, model="tiny", return_periodicity=True, batch_size=512, device="cpu", pad=True)
    p = torchcrepe.filter.median(p, 3)[0].numpy()
    f = f[0].numpy()
    return on_grid(np.arange(f.size) * HOP_S, np.where(p > 0.21, f, 0.0), x.size / sr)


def track_pesto(x, sr=SR, fmin=60.0, fmax=400.0):
    import pesto
    import torch

    t, f, c, _ = pesto.predict(torch.tensor(x.astype(np.float32)), sr, step_size=HOP_S * 1000)
    t, f, c = t.numpy(), f.numpy(), c.numpy()
    t = t / 1000.0 if t.size and t.max() > x.size / sr + 1 else t  # ms in some versions
    return on_grid(t, np.where((c > 0.5) & (f >= fmin) & (f <= fmax), f, 0.0), x.size / sr)


#: name -> (tracker, the module it needs); the bench runs those whose module is installed
TRACKERS = {"praat": (track_praat, "parselmouth"), "yin": (track_yin, "scipy"), "pyin": (track_pyin, "librosa"),
            "swift-f0": (track_swift, "swift_f0"), "torchcrepe-tiny": (track_crepe_tiny, "torchcrepe"),
            "pesto": (track_pesto, "pesto")}
