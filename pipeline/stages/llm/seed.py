"""DeSTA2 seed descriptions: "[00:00-00:05] transcript (Gender: ..., Emotion: ..., Pitch: ..., Duration: 5s)".

The text labels here (pitch, speed, noise) are what the seed and the label tasks say about a row."""
from __future__ import annotations

from pipeline.core.prompts import localized, render
from pipeline.core.rows import PITCH_CENTRE_HZ, gender_of, manifest_labels
from pipeline.core.text import rate_units

#: (slow below, fast above) per second, in each language's speaking-rate unit (pipeline.core.text.rate_units):
#: words for spaced languages, morae for Japanese (~7-8/s conversational), characters (syllables) for Chinese (~4-5/s)
RATE_BANDS = {"words": (2.0, 3.5), "morae": (5.5, 9.0), "characters": (3.0, 5.5)}


def mmss(t: float) -> str:
    t = max(0, int(round(t)))
    return f"{t // 60:02d}:{t % 60:02d}"


def speed_label(words: int, duration: float, unit: str = "words") -> str:
    """``words``: the count in ``unit`` (words, morae or characters: see RATE_BANDS)."""
    wps = words / max(duration, 0.1)
    slow, fast = RATE_BANDS.get(unit, RATE_BANDS["words"])
    return "slow" if wps < slow else "fast" if wps > fast else "normal speed"


def speed_label_for(transcript: str, duration: float, language: str | None) -> tuple[str, int, str]:
    """(label, units per minute, unit) of a transcript in ``language`` spoken over ``duration`` seconds."""
    n, unit = rate_units(transcript, language) if language else (0, "words")
    if unit == "words":  # whitespace words, as the English seeds always counted them
        n = len(transcript.split())
    return speed_label(n, duration, unit), int(round(60 * n / max(duration, 0.1))), unit


def pitch_label(pitch: float | None, gender: str | None) -> str | None:
    if pitch is None:
        return None
    ref = PITCH_CENTRE_HZ.get(gender or "", PITCH_CENTRE_HZ["other"])
    return "low pitch" if pitch < 0.85 * ref else "high pitch" if pitch > 1.15 * ref else "normal pitch"


def snr_label(snr: float | None, capped: bool | None = False) -> str | None:
    """"noisy (14 dB)"; an estimate at the estimator's cap (``snr_capped``) is just "clean": no made-up number."""
    if snr is None:
        return None
    if capped:
        return "clean"
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


def seed_description(row: dict, transcript: str, language: str | None = None) -> str:
    """DeSTA2 seed: "[00:00-00:05] transcript (Gender: ..., Emotion: ..., Accent: ..., Pitch: ..., Speaking speed: ...,
    SNR: ..., Duration: 5s)".
    Attributes that no estimator produced are left out rather than guessed; so is a gender the estimator abstained
    on (``gender`` null, pipeline.backends.metadata.gender_evidence) unless the manifest gives one."""
    dur = float(row["duration_s"])
    attrs = [
        ("Gender", (gender_of(row) or "").capitalize() or None),
        ("Emotion", _categorical(row, "emotion")),
        ("Accent", _categorical(row, "accent")),
        ("Pitch", pitch_label(row.get("pitch_mean_hz"), gender_of(row))),
        ("Speaking speed", speed_label_for(transcript, dur, language)[0]),
        ("SNR", snr_label(row.get("snr_db"), row.get("snr_capped"))),
        ("Duration", f"{dur:.0f}s"),
    ]
    return render(localized("desta_seed.j2", language), start=mmss(0), end=mmss(dur), transcript=transcript,
                  attributes=[(k, v) for k, v in attrs if v])
