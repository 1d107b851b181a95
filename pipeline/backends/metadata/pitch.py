"""Pitch (F0 mean and standard deviation over voiced frames).

Backend ``praat`` (default): Praat's autocorrelation pitch tracker (Boersma 1993) through praat-parselmouth, with
its Viterbi path over candidates (octave and octave-jump costs): measured on the hard known-truth set
(tests/fixtures_metadata/hardset.py, bench/bench_metadata.py --only f0) it has the fewest gross and octave errors
of the trackers that install from the registry, on rough / creaky / breathy espeak-ng variants and in noise.
Backend ``yin``: vectorised YIN (de Cheveigne & Kawahara 2002) with a voicing decision (aperiodicity + energy
gates) and removal of isolated octave jumps (no dependency but scipy; loses most voiced frames in noise);
backend ``pyin``: librosa.pyin (HMM-smoothed, ~40x slower than praat).

``pitch_mean_hz`` / ``pitch_std_hz`` are the mean / standard deviation over voiced frames; ``pitch_median_hz``
and ``pitch_voiced_frames`` are what the gender evidence reads (pipeline.backends.metadata.gender_evidence).
"""
from __future__ import annotations

import numpy as np

from pipeline.backends.metadata.base import ClipEstimator

YIN_HOP_S = 0.010
YIN_THRESHOLD = 0.15  # the first dip of the normalised difference below this is taken as the period
YIN_FALLBACK_MARGIN = 0.1  # frames with no dip below it: first dip within this of the frame's minimum
YIN_VOICED_MAX = 0.25  # a frame is voiced only if its aperiodicity (dip value) is below this ...
YIN_REL_DB = -35.0  # ... and its energy is within 35 dB of the loudest frame ...
YIN_ABS_DBFS = -70.0  # ... and above -70 dBFS
OCTAVE_JUMP_WINDOW = 25  # voiced frames (10 ms each) in the running median
OCTAVE_JUMP_MAX = 0.5  # octaves from the running median beyond which a frame is dropped
MIN_VOICED_FRAMES = 5


def yin_track(x: np.ndarray, sr: int, fmin: float, fmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame-wise F0 (Hz) and voiced flags with YIN, vectorised over frames (10 ms hop).

    Difference function via FFT cross-correlation and cumulative energies; cumulative-mean
    normalisation; absolute threshold (minimum of the first dip below it); parabolic interpolation.
    """
    x = np.asarray(x, dtype=np.float64)
    tau_min = max(2, int(np.floor(sr / fmax)))
    tau_max = int(np.ceil(sr / fmin))
    w = tau_max + 1  # integration window: one longest period
    length = w + tau_max + 1
    hop = max(1, int(round(YIN_HOP_S * sr)))
    if x.size < length:
        raise ValueError(f"too short for pitch ({x.size} samples < {length} at fmin={fmin:g} Hz)")
    n_frames = 1 + (x.size - length) // hop
    fr = np.lib.stride_tricks.sliding_window_view(x, length)[::hop][:n_frames]
    fr = fr - fr.mean(axis=1, keepdims=True)
    nfft = 1 << int(np.ceil(np.log2(length)))
    acf = np.fft.irfft(np.conj(np.fft.rfft(fr[:, :w], nfft)) * np.fft.rfft(fr, nfft), nfft)[:, : tau_max + 1]
    c = np.concatenate([np.zeros((n_frames, 1)), np.cumsum(fr * fr, axis=1)], axis=1)
    e0 = c[:, w]
    d = e0[:, None] + (c[:, w: w + tau_max + 1] - c[:, : tau_max + 1]) - 2.0 * acf
    d = np.maximum(d, 0.0)
    cs = np.cumsum(d[:, 1:], axis=1)
    tau = np.arange(1, tau_max + 1, dtype=np.float64)
    cmnd = np.where(cs > 1e-12, d[:, 1:] * tau / np.maximum(cs, 1e-300), 1.0)  # cmnd[:, k] is lag k+1
    seg = cmnd[:, tau_min - 1: tau_max]  # lags tau_min..tau_max
    # the period is the minimum of the first dip below the threshold; a frame without such a dip
    # (noisy: white noise lifts every dip by ~1/(1+SNR)) uses gmin + YIN_FALLBACK_MARGIN instead of
    # the global minimum, which lands on a random multiple of the period when the dips are equal
    gmin = seg.min(axis=1, keepdims=True)
    below = seg < np.where(gmin < YIN_THRESHOLD, YIN_THRESHOLD, gmin + YIN_FALLBACK_MARGIN)
    start = np.argmax(below, axis=1)  # every row has at least its global minimum below
    after = np.arange(seg.shape[1])[None, :] >= start[:, None]
    first_dip = after & below & (np.cumsum(after & ~below, axis=1) == 0)
    k = np.argmin(np.where(first_dip, seg, np.inf), axis=1)
    rows = np.arange(n_frames)
    dip = seg[rows, k]
    km = np.clip(k, 1, seg.shape[1] - 2)
    a, b, cc = seg[rows, km - 1], seg[rows, km], seg[rows, km + 1]
    den = a - 2.0 * b + cc
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - cc) / den, 0.0)
    period = tau_min + km + np.clip(shift, -1.0, 1.0)
    f0 = sr / period
    energy_db = 10.0 * np.log10(e0 / w + 1e-20)
    voiced = (
        (dip < YIN_VOICED_MAX)
        & (energy_db > energy_db.max() + YIN_REL_DB)
        & (energy_db > YIN_ABS_DBFS)
        & (f0 >= fmin) & (f0 <= fmax)
    )
    return f0, voiced


def drop_octave_jumps(f0_voiced: np.ndarray) -> np.ndarray:
    """Drop voiced frames more than OCTAVE_JUMP_MAX octaves from the running median (YIN's
    typical error: an isolated jump to half or double the period)."""
    from scipy.ndimage import median_filter

    if f0_voiced.size < 3:
        return f0_voiced
    lf = np.log2(f0_voiced)
    med = median_filter(lf, size=min(OCTAVE_JUMP_WINDOW, lf.size), mode="nearest")
    return f0_voiced[np.abs(lf - med) <= OCTAVE_JUMP_MAX]


def pitch_yin(x: np.ndarray, sr: int, fmin: float, fmax: float) -> np.ndarray:
    f0, voiced = yin_track(x, sr, fmin, fmax)
    return drop_octave_jumps(f0[voiced])


def pitch_pyin(x: np.ndarray, sr: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa

    frame = 1 << int(np.ceil(np.log2(2.0 * sr / fmin)))  # >= two periods of fmin
    if x.size < frame:
        raise ValueError(f"too short for pitch ({x.size} samples < {frame} at fmin={fmin:g} Hz)")
    f0, vflag, _ = librosa.pyin(x.astype(np.float32), fmin=fmin, fmax=fmax, sr=sr, frame_length=frame,
                                hop_length=frame // 4, center=False)
    return f0[vflag & np.isfinite(f0)]


def pitch_praat(x: np.ndarray, sr: int, fmin: float, fmax: float) -> np.ndarray:
    """F0 (Hz) of the voiced frames, Praat ``To Pitch (ac)`` with its default costs, 10 ms steps."""
    import parselmouth

    if x.size < 3.0 * sr / fmin:  # Praat's analysis window is three periods of the floor
        raise ValueError(f"too short for pitch ({x.size} samples < {int(3.0 * sr / fmin)} at fmin={fmin:g} Hz)")
    snd = parselmouth.Sound(np.asarray(x, dtype=np.float64), sampling_frequency=float(sr))
    f0 = snd.to_pitch_ac(time_step=0.01, pitch_floor=float(fmin), pitch_ceiling=float(fmax)).selected_array["frequency"]
    return f0[f0 > 0]


class _PitchStats(ClipEstimator):
    name = "pitch"
    keys = ("pitch_mean_hz", "pitch_std_hz", "pitch_median_hz", "pitch_voiced_frames", "pitch_source")
    source = ""

    def __init__(self, fmin: float = 60.0, fmax: float = 400.0):
        if fmin <= 0 or fmax <= fmin:
            raise ValueError(f"bad pitch range {fmin}..{fmax} Hz")
        self.fmin, self.fmax = fmin, fmax

    @classmethod
    def from_config(cls, cfg, **context) -> "_PitchStats":
        return cls(cfg.pitch_fmin, cfg.pitch_fmax)

    @staticmethod
    def track(x: np.ndarray, sr: int, fmin: float, fmax: float) -> np.ndarray:
        raise NotImplementedError

    def estimate(self, x: np.ndarray, sr: int) -> dict:
        f = self.track(x, sr, self.fmin, self.fmax)
        if f.size < MIN_VOICED_FRAMES:
            raise ValueError(f"no pitch: {f.size} voiced frames (< {MIN_VOICED_FRAMES})")
        return {"pitch_mean_hz": float(np.mean(f)), "pitch_std_hz": float(np.std(f)),
                "pitch_median_hz": float(np.median(f)), "pitch_voiced_frames": int(f.size), "pitch_source": self.source}


class PraatPitch(_PitchStats):
    track = staticmethod(pitch_praat)

    def __init__(self, fmin: float = 60.0, fmax: float = 400.0):
        super().__init__(fmin, fmax)
        from pipeline.backends.metadata.base import dist_version

        import parselmouth  # noqa: F401 (fail at load time when it is missing)

        self.source = f"praat-parselmouth-{dist_version('praat-parselmouth')}:ac"


class YinPitch(_PitchStats):
    source = "yin"
    track = staticmethod(pitch_yin)


class PyinPitch(_PitchStats):
    track = staticmethod(pitch_pyin)

    def __init__(self, fmin: float = 60.0, fmax: float = 400.0):
        super().__init__(fmin, fmax)
        import librosa

        self.source = f"librosa-pyin-{librosa.__version__}"
