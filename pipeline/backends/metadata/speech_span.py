"""Speech span: time from the first to the last speech frame (20 ms frames within 40 dB of the loudest
and 6 dB above the clip's noise floor), the denominator of speaking rates.
"""
from __future__ import annotations

import numpy as np

from pipeline.backends.metadata.base import ClipEstimator

SPAN_FRAME_S = 0.020
SPAN_HOP_S = 0.010
SPAN_REL_DB = -40.0  # a speech frame is within 40 dB of the loudest frame ...
SPAN_FLOOR_DB = 6.0  # ... and 6 dB above the clip's noise floor (10th percentile of frame energies)


def speech_span(x: np.ndarray, sr: int) -> float:
    """Seconds from the start of the first to the end of the last speech frame (energy gate).
    Raises ValueError for silence or clips shorter than one frame."""
    frame, hop = int(round(SPAN_FRAME_S * sr)), int(round(SPAN_HOP_S * sr))
    x = np.asarray(x, dtype=np.float64)
    if x.size < frame:
        raise ValueError(f"too short for a speech span ({x.size} samples)")
    fr = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    e = 10.0 * np.log10(np.mean(fr * fr, axis=1) + 1e-20)
    if e.max() <= -100.0:
        raise ValueError("silent audio")
    floor = np.percentile(e, 10)
    active = np.flatnonzero((e > e.max() + SPAN_REL_DB) & (e > floor + SPAN_FLOOR_DB))
    if active.size == 0:  # flat energy (a tone, stationary noise): the whole clip
        return float(x.size / sr)
    return float((active[-1] * hop + frame - active[0] * hop) / sr)


class SpeechSpan(ClipEstimator):
    name = "span"
    keys = ("speech_span_s",)

    def estimate(self, x: np.ndarray, sr: int) -> dict:
        return {"speech_span_s": speech_span(x, sr)}
