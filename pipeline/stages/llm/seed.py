"""DeSTA2 seed descriptions: "[00:00-00:05] transcript (Gender: ..., Emotion: ..., Pitch: ..., Duration: 5s)".

The text labels here (pitch, speed, noise) are what the seed and the label tasks say about a row."""
from __future__ import annotations

from pipeline.core.prompts import render
from pipeline.core.rows import PITCH_CENTRE_HZ, gender_of, manifest_labels


def mmss(t: float) -> str:
    t = max(0, int(round(t)))
    return f"{t // 60:02d}:{t % 60:02d}"


def speed_label(words: int, duration: float) -> str:
    wps = words / max(duration, 0.1)
    return "slow" if wps < 2.0 else "fast" if wps > 3.5 else "normal speed"


def pitch_label(pitch: float | None, gender: str | None) -> str | None:
    if pitch is None:
        return None
    ref = PITCH_CENTRE_HZ.get(gender or "", PITCH_CENTRE_HZ["other"])
    return "low pitch" if pitch < 0.85 * ref else "high pitch" if pitch > 1.15 * ref else "normal pitch"


def snr_label(snr: float | None) -> str | None:
    if snr is None:
        return None
    q = "very noisy" if snr < 10 else "noisy" if snr < 20 else "fairly clean" if snr < 30 else "clean"
    return f"{q} ({snr:.0f} dB)"


def _categorical(row: dict, name: str) -> str | None:
    """A manifest label (labels_json.<name>) over the estimate; an estimate read from the transcript's
    words (``<name>_source`` text-...) is marked as such, so the LLM does not present it as heard."""
    v = manifest_labels(row).get(name)
    if isinstance(v, str) and v.strip():
        return v.strip().lower()
    v = row.get(name)
    if not v:
        return None
    return f"{v} (from the words)" if (row.get(f"{name}_source") or "").startswith("text-") else str(v)


def seed_description(row: dict, transcript: str) -> str:
    """DeSTA2 seed: "[00:00-00:05] transcript (Gender: ..., Emotion: ..., Accent: ..., Pitch: ..., Speaking speed: ...,
    SNR: ..., Duration: 5s)".
    Attributes that no estimator produced are left out rather than guessed."""
    dur = float(row["duration_s"])
    attrs = [
        ("Gender", (gender_of(row) or "").capitalize() or None),
        ("Emotion", _categorical(row, "emotion")),
        ("Accent", _categorical(row, "accent")),
        ("Pitch", pitch_label(row.get("pitch_mean_hz"), gender_of(row))),
        ("Speaking speed", speed_label(len(transcript.split()), dur)),
        ("SNR", snr_label(row.get("snr_db"))),
        ("Duration", f"{dur:.0f}s"),
    ]
    return render("desta_seed.j2", start=mmss(0), end=mmss(dur), transcript=transcript,
                  attributes=[(k, v) for k, v in attrs if v])
