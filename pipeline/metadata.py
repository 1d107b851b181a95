"""Per-utterance metadata: loudness, SNR, pitch, gender, speech span, speakers, DNSMOS, emotion, accent,
language and speaking rate (embedded CPU defaults; production model backends by config).

One :class:`MetadataEstimator` per worker process; :meth:`MetadataEstimator.estimate_batch` takes a list
of mono float32 waveforms and returns one dict per waveform with exactly these keys (the
``utterances`` columns filled by this stage) plus ``metadata_errors``:

===================  ==========================================================================
loudness_lufs        integrated loudness, ITU-R BS.1770-4 via pyloudnorm (K-weighting, 400 ms
                     blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates). A clip
                     shorter than one 400 ms block is measured as a single block of its own length.
snr_db / snr_source  WADA-SNR (Kim & Stern, Interspeech 2008): blind SNR from the amplitude
                     distribution, assuming clean speech ~ gamma(shape 0.4) and additive Gaussian
                     noise. The G(SNR) look-up table is derived here by numerical integration
                     (see :func:`wada_table`), not copied. Range -20..100 dB (clipped).
pitch_mean_hz /      mean and standard deviation of F0 over voiced frames. Default backend
pitch_std_hz /       ``yin``: vectorised YIN (de Cheveigne & Kawahara 2002) with a voicing
pitch_source         decision (aperiodicity + energy gates) and removal of isolated octave jumps;
                     optional backend ``pyin`` (librosa.pyin, HMM-smoothed, ~20x slower).
gender /             voice2gender (XGBoost on 20 seewave-style acoustic features): label
gender_score /       ``male``/``female``, score = probability of that label.
gender_source
speech_span_s        time from the first to the last speech frame (20 ms frames within 40 dB of the
                     loudest and 6 dB above the clip's noise floor): the denominator of speaking rates.
n_speakers /         speakers in the clip; default backend Resemblyzer GE2E window embeddings +
overlap_ratio /      agglomerative clustering (overlap_ratio null: one embedding per window cannot
n_speakers_source    see overlap); pyannote backends by config (see pipeline.metadata_speakers).
dnsmos_sig/bak/ovrl  DNSMOS P.835 (speechmos ONNX), opt-in (``dnsmos: true``; ~2x realtime per core).
/ dnsmos_source
emotion / _score /   null by default (no speech-emotion model ships in a package). ``text-nrc``: NRC
emotion_source       lexicon over the transcript's words (``reference_text`` here; ``asr_text`` later
                     via pipeline.metadata_text / pipeline.bins), source
                     ``text-lexicon:nrc-emolex:<text column>`` - about the words, not the voice.
                     ``speechbrain``: IEMOCAP wav2vec2 audio model (hub weights).
accent / _score /    null by default (no accent model ships in a package); ``speechbrain``:
accent_source        CommonAccent ECAPA (hub weights).
language / _score /  null here by default (pipeline.bins copies asr_language); ``speechbrain``:
language_source      VoxLingua107 ECAPA on the audio (hub weights).
c50_db / c50_source  null unless ``snr_backend: brouhaha`` (no reverberation model ships in a package).
age_years /          only with ``gender_backend: audeering``.
age_source
n_words / n_phonemes words and espeak-ng phonemes of the transcript, and their rates over
speaking_rate_wps /  speech_span_s; from ``reference_text`` here (source says which text), else
speaking_rate_pps /  later from ``asr_text``.
speaking_rate_source
metadata_errors      list[str]: one ``"<estimator>: <error>"`` per estimator that failed for this
                     row (its keys, including the ``*_source`` key, are then None). Never raises for
                     the batch. An estimator that is switched off leaves its keys None silently.
===================  ==========================================================================
"""
from __future__ import annotations

import importlib.metadata as _md
import warnings
from functools import lru_cache

import numpy as np

from .config import MetadataConfig

OUTPUT_KEYS = (
    "loudness_lufs",
    "snr_db", "snr_source",
    "pitch_mean_hz", "pitch_std_hz", "pitch_source",
    "gender", "gender_score", "gender_source",
    "speech_span_s",
    "n_speakers", "overlap_ratio", "n_speakers_source",
    "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_source",
    "emotion", "emotion_score", "emotion_source",
    "accent", "accent_score", "accent_source",
    "language", "language_score", "language_source",
    "c50_db", "c50_source",
    "age_years", "age_source",
    "n_words", "n_phonemes", "speaking_rate_wps", "speaking_rate_pps", "speaking_rate_source",
)
#: (estimator name, keys that are set together or not at all)
KEY_GROUPS = (
    ("loudness", ("loudness_lufs",)),
    ("snr", ("snr_db", "snr_source")),
    ("pitch", ("pitch_mean_hz", "pitch_std_hz", "pitch_source")),
    ("gender", ("gender", "gender_score", "gender_source")),
    ("span", ("speech_span_s",)),
    ("speakers", ("n_speakers", "n_speakers_source")),
    ("dnsmos", ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_source")),
    ("emotion", ("emotion", "emotion_score", "emotion_source")),
    ("accent", ("accent", "accent_score", "accent_source")),
    ("language", ("language", "language_score", "language_source")),
    ("c50", ("c50_db", "c50_source")),
    ("age", ("age_years", "age_source")),
    ("speaking_rate", ("n_words", "n_phonemes", "speaking_rate_wps", "speaking_rate_pps", "speaking_rate_source")),
)
ERRORS_KEY = "metadata_errors"

SNR_SOURCE = "wada-snr"

# --------------------------------------------------------------------------------------------------
# WADA-SNR
# --------------------------------------------------------------------------------------------------
WADA_ALPHA = 0.4  # shape of the gamma distribution of clean-speech amplitudes (Kim & Stern 2008)
WADA_DB = np.arange(-20, 101, dtype=np.float64)  # table support, as in the paper's reference code
_SNR_MIN_S = 0.1  # fewer samples than this => no SNR (the statistic is too noisy)


def _gauss_elog_abs(x: np.ndarray) -> np.ndarray:
    """E[ln|x + n|] for n ~ N(0, 1) and x >= 0.

    (x + n)^2 is noncentral chi-square with one degree of freedom and noncentrality x^2, i.e. a
    Poisson(x^2/2) mixture of central chi-squares with 1 + 2j degrees of freedom, and
    E[ln chi2_k] = ln 2 + digamma(k/2). For large x the expansion
    E ln|x+n| = ln x - 1/(2x^2) - 3/(4x^4) - 5/(2x^6) + ... is used.
    """
    from scipy.special import digamma, gammaln

    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    big = x > 30.0
    xb = x[big]
    out[big] = np.log(xb) - 0.5 / xb**2 - 0.75 / xb**4 - 2.5 / xb**6
    xs = x[~big]
    lam = xs**2 / 2.0
    j = np.arange(0, 1200, dtype=np.float64)  # Poisson(<=450) mass beyond 1200 is nil
    with np.errstate(divide="ignore"):
        logp = -lam[:, None] + j[None, :] * np.log(lam[:, None]) - gammaln(j + 1.0)[None, :]
    logp[lam == 0.0, :] = -np.inf
    logp[lam == 0.0, 0] = 0.0
    out[~big] = 0.5 * (np.log(2.0) + np.exp(logp) @ digamma(j + 0.5))
    return out


def _gauss_eabs(x: np.ndarray) -> np.ndarray:
    """E|x + n| for n ~ N(0, 1) (folded normal mean)."""
    from scipy.special import erf

    return np.sqrt(2.0 / np.pi) * np.exp(-(x**2) / 2.0) + x * erf(x / np.sqrt(2.0))


@lru_cache(maxsize=None)
def wada_table(alpha: float = WADA_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(SNR dB, G) with G(SNR) = ln E|z| - E ln|z| for z = x + n.

    x: clean speech, |x| ~ Gamma(alpha, theta) with random sign; n ~ N(0, 1);
    SNR = E[x^2] / E[n^2] = alpha (alpha + 1) theta^2. Expectations over x are computed with the
    substitution u = y^alpha (y = x / theta ~ Gamma(alpha, 1)), which removes the y^(alpha-1)
    singularity: E[f(y)] = int f(u^(1/alpha)) exp(-u^(1/alpha)) / Gamma(alpha + 1) du. Takes ~0.1 s.
    Agrees with Kim's published (Monte-Carlo) table to < 0.001 for -20..25 dB and < 0.006 above;
    the limit for SNR -> inf is ln(alpha) - digamma(alpha) = 1.645 and for SNR -> -inf the Gaussian
    value (ln 2 + euler_gamma)/2 - ln sqrt(pi/2) = 0.409.
    """
    from scipy.special import gamma as gamma_fn

    n = 4000
    u_max = 60.0**alpha  # y up to 60: exp(-60) of the mass is beyond
    u = (np.arange(n) + 0.5) * (u_max / n)
    y = u ** (1.0 / alpha)
    w = np.exp(-y) / gamma_fn(alpha + 1.0) * (u_max / n)
    w /= w.sum()
    xg = np.logspace(-10, 8, 3000)
    hg = _gauss_elog_abs(xg)
    g = np.empty_like(WADA_DB)
    for i, db in enumerate(WADA_DB):
        theta = np.sqrt(10.0 ** (db / 10.0) / (alpha * (alpha + 1.0)))
        x = theta * y
        e_abs = float(w @ _gauss_eabs(x))
        e_log = float(w @ np.interp(np.log(x), np.log(xg), hg, left=hg[0]))
        g[i] = np.log(e_abs) - e_log
    g = np.maximum.accumulate(g)  # monotone by construction; guard against last-digit noise
    return WADA_DB.copy(), g


def wada_snr(audio: np.ndarray) -> float:
    """Blind SNR (dB) of one waveform, WADA (Kim & Stern 2008). Raises ValueError on silence."""
    x = np.asarray(audio, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0.0:
        raise ValueError("silent (all-zero) audio")
    a = np.maximum(np.abs(x) / peak, 1e-10)  # the reference code's eps floor (exact zeros)
    gz = float(np.log(a.mean()) - np.mean(np.log(a)))
    dbs, g = wada_table()
    # the reference code then splits the total energy E into E*f/(1+f) and E/(1+f), f = 10^(snr/10),
    # whose ratio is the table SNR itself
    return float(np.interp(gz, g, dbs))  # clipped to [-20, 100] dB at the table ends


# --------------------------------------------------------------------------------------------------
# Pitch
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# Loudness
# --------------------------------------------------------------------------------------------------
LOUDNESS_BLOCK_S = 0.4


def integrated_loudness(x: np.ndarray, sr: int, meter=None) -> float:
    """BS.1770 integrated loudness (LUFS). Clips shorter than one 400 ms block are measured as a
    single block of their own length. Raises ValueError for audio below the -70 LUFS gate."""
    import pyloudnorm

    x = np.asarray(x, dtype=np.float64)
    if x.size < 16:
        raise ValueError(f"too short for loudness ({x.size} samples)")
    if x.size < LOUDNESS_BLOCK_S * sr:
        # a hair shorter than the clip, so pyloudnorm's length check passes (the block then
        # spans size-1 samples: < 0.03 dB bias for clips over 10 ms)
        meter = pyloudnorm.Meter(sr, block_size=(x.size - 0.5) / sr)
    elif meter is None:
        meter = pyloudnorm.Meter(sr)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        lufs = float(meter.integrated_loudness(x))
    if not np.isfinite(lufs):
        raise ValueError("below the -70 LUFS absolute gate (silence)")
    return lufs


# --------------------------------------------------------------------------------------------------
# Speech span
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------------------------------
def _dist_version(name: str) -> str:
    try:
        return _md.version(name)
    except _md.PackageNotFoundError:
        return "unknown"


class MetadataEstimator:
    """Loads every configured estimator once; :meth:`estimate_batch` never raises for per-row problems.

    Per-row estimators (loudness, SNR, pitch, speech span, voice2gender features) run clip by clip
    (they are numpy/scipy, hundreds of times realtime); every model-backed estimator (voice2gender's
    booster, speaker embeddings, DNSMOS, speechbrain / audeering / brouhaha / pyannote models) takes
    the whole batch at once.
    """

    def __init__(self, cfg: MetadataConfig | None = None):
        self.cfg = cfg = cfg or MetadataConfig()
        if cfg.pitch_fmin <= 0 or cfg.pitch_fmax <= cfg.pitch_fmin:
            raise ValueError(f"bad pitch range {cfg.pitch_fmin}..{cfg.pitch_fmax} Hz")
        if cfg.gender_backend not in ("voice2gender", "audeering"):
            raise ValueError(f"unknown gender backend {cfg.gender_backend!r}")
        self._v2g_features = None
        self._age_gender = None
        if cfg.gender_backend == "voice2gender":
            self._load_voice2gender()
        else:
            from .metadata_models import AudeeringAgeGender

            self._age_gender = AudeeringAgeGender(cfg.gender_model, cfg.device, cfg.model_batch_size)
        backend = getattr(cfg, "pitch_backend", "yin")
        if backend == "yin":
            self._pitch = pitch_yin
            self.pitch_source = "yin"
        elif backend == "pyin":
            import librosa

            self._pitch = pitch_pyin
            self.pitch_source = f"librosa-pyin-{librosa.__version__}"
        else:
            raise ValueError(f"unknown pitch backend {backend!r}")
        wada_table()  # derive the WADA table now, not on the first row
        self._meters: dict[int, object] = {}
        # batched model estimators: (name, object with predict_batch/count_batch, output mapping)
        self._brouhaha = self._dnsmos = self._speakers = None
        self._classifiers: dict[str, object] = {}
        if cfg.snr_backend == "brouhaha":
            from .metadata_models import Brouhaha

            self._brouhaha = Brouhaha(cfg.brouhaha_model, cfg.device, cfg.model_batch_size)
        if cfg.dnsmos:
            from .metadata_models import DNSMOS

            self._dnsmos = DNSMOS(cfg.dnsmos_batch)
        from .metadata_speakers import load_speakers

        self._speakers = load_speakers(cfg)
        if cfg.emotion_backend == "speechbrain" or cfg.accent_backend == "speechbrain" or cfg.language_backend == "speechbrain":
            from .metadata_models import EMOTION_INTERFACE, SpeechBrainClassifier

            if cfg.emotion_backend == "speechbrain":
                self._classifiers["emotion"] = SpeechBrainClassifier(cfg.emotion_model, "emotion", cfg.device,
                                                                     cfg.model_batch_size, interface=EMOTION_INTERFACE)
            if cfg.accent_backend == "speechbrain":
                self._classifiers["accent"] = SpeechBrainClassifier(cfg.accent_model, "accent", cfg.device, cfg.model_batch_size)
            if cfg.language_backend == "speechbrain":
                self._classifiers["language"] = SpeechBrainClassifier(cfg.language_model, "language", cfg.device,
                                                                      cfg.model_batch_size)
        if cfg.emotion_backend == "text-nrc":
            from .metadata_text import nrc_lexicon

            nrc_lexicon()  # fail at load time, not per row, when nrclex is missing

    def _load_voice2gender(self) -> None:
        import voice2gender  # loads the bundled XGBoost booster (module level) once

        self._v2g = voice2gender
        self.gender_source = f"voice2gender-{_dist_version('voice2gender')}"
        try:  # batched path: voice2gender's own feature extractor + one booster call per batch
            from voice2gender._model import FEATURE_NAMES, booster
            from voice2gender._preprocess import extract_features_from_pcm_sequence

            self._v2g_features = extract_features_from_pcm_sequence
            self._v2g_names = list(FEATURE_NAMES)
            # a private single-threaded copy: xgboost's default thread pool costs ~50 ms per call on
            # a busy 2-core box (and one worker per core is the deployment model)
            self._v2g_booster = booster.copy()
            self._v2g_booster.set_param({"nthread": 1})
        except (ImportError, AttributeError):  # internals moved: fall back to voice2gender.predict per row
            self._v2g_features = None

    # -- one estimator each; each returns its keys or raises ----------------------------------------
    def _loudness(self, x: np.ndarray, sr: int) -> dict:
        if sr not in self._meters:
            import pyloudnorm

            self._meters[sr] = pyloudnorm.Meter(sr)
        return {"loudness_lufs": integrated_loudness(x, sr, self._meters[sr])}

    def _snr(self, x: np.ndarray, sr: int) -> dict:
        if x.size < _SNR_MIN_S * sr:
            raise ValueError(f"too short for SNR ({x.size / sr:.3f} s < {_SNR_MIN_S} s)")
        return {"snr_db": wada_snr(x), "snr_source": SNR_SOURCE}

    def _pitch_stats(self, x: np.ndarray, sr: int) -> dict:
        f = self._pitch(x, sr, self.cfg.pitch_fmin, self.cfg.pitch_fmax)
        if f.size < MIN_VOICED_FRAMES:
            raise ValueError(f"no pitch: {f.size} voiced frames (< {MIN_VOICED_FRAMES})")
        return {"pitch_mean_hz": float(np.mean(f)), "pitch_std_hz": float(np.std(f)),
                "pitch_source": self.pitch_source}

    @staticmethod
    def _span(x: np.ndarray, sr: int) -> dict:
        return {"speech_span_s": speech_span(x, sr)}

    @staticmethod
    def _pcm16(x: np.ndarray) -> bytes:
        return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    def _gender_label(self, p_female: float) -> dict:
        if not np.isfinite(p_female):
            raise ValueError("non-finite probability")
        label = "female" if p_female >= 0.5 else "male"
        return {"gender": label, "gender_score": p_female if label == "female" else 1.0 - p_female,
                "gender_source": self.gender_source}

    def _gender_features(self, x: np.ndarray, sr: int) -> np.ndarray:
        """voice2gender's 20 features (its ValueErrors: too short < 2048 samples, silent, no F0)."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            f = self._v2g_features([self._pcm16(x)], sample_rate=int(sr))
        v = np.asarray([f[n] for n in self._v2g_names], dtype=np.float32)
        if not np.isfinite(v).all():
            raise ValueError("Model features contain NaN or infinite values")
        return v

    def _gender(self, x: np.ndarray, sr: int) -> dict:
        """Unbatched path (public voice2gender.predict)."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            r = self._v2g.predict([self._pcm16(x)], sample_rate=int(sr))
        return self._gender_label(float(r["female_probability"]))

    _ESTIMATORS = (
        ("loudness", "_loudness", ("loudness_lufs",)),
        ("snr", "_snr", ("snr_db", "snr_source")),
        ("pitch", "_pitch_stats", ("pitch_mean_hz", "pitch_std_hz", "pitch_source")),
        ("span", "_span", ("speech_span_s",)),
    )
    _GENDER_KEYS = ("gender", "gender_score", "gender_source")

    @staticmethod
    def _check_input(audio, sample_rate) -> tuple[np.ndarray, int]:
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        if x.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {x.shape}")
        if x.size == 0:
            raise ValueError("empty audio")
        if not np.isfinite(x).all():
            raise ValueError("audio contains NaN/Inf samples")
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"bad sample rate {sample_rate!r}")
        return x, int(sample_rate)

    def _run(self, out: dict, errors: list, name: str, keys: tuple, fn, *args) -> None:
        try:
            vals = fn(*args)
            if isinstance(vals, Exception):
                raise vals
            for k in keys:
                v = vals[k]
                if isinstance(v, float) and not np.isfinite(v):
                    raise ValueError(f"non-finite {k}")
            out.update({k: vals[k] for k in keys})
        except Exception as e:  # noqa: BLE001 - a bad row must not stop the batch
            errors.append(f"{name}: {type(e).__name__}: {e}")

    def _batched(self, outs: list[dict], valid: list[tuple[int, np.ndarray]], sr: int, name: str, keys: tuple,
                 fn, mapping=None) -> None:
        """Run one batched estimator over the valid rows; per-row results or exceptions; a failure of the
        whole call is reported on every row."""
        if not valid:
            return
        try:
            results = fn([x for _, x in valid], sr)
            if len(results) != len(valid):
                raise RuntimeError(f"{len(results)} results for {len(valid)} clips")
        except Exception as e:  # noqa: BLE001
            for i, _ in valid:
                outs[i][ERRORS_KEY].append(f"{name}: {type(e).__name__}: {e}")
            return
        for (i, _), r in zip(valid, results):
            if mapping is not None and isinstance(r, dict):
                r = {k: r[src] for k, src in mapping.items()}
            self._run(outs[i], outs[i][ERRORS_KEY], name, keys, lambda v: v, r)

    def estimate_batch(self, audios: list[np.ndarray], sample_rate: int, texts: list[str | None] | None = None,
                       text_source: str = "reference_text", languages: list[str | None] | None = None) -> list[dict]:
        """One dict per audio (mono float32 in [-1, 1] at ``sample_rate``), keys OUTPUT_KEYS +
        ``metadata_errors``. ``texts``: the rows' transcripts where known (``reference_text``), for
        speaking rate and text emotion; ``languages``: language codes for the phonemizer. Failures
        are per row and per estimator (values None, reason listed)."""
        outs: list[dict] = []
        feats: list[tuple[int, np.ndarray]] = []
        valid: list[tuple[int, np.ndarray]] = []
        sr = sample_rate
        for i, audio in enumerate(audios):
            out: dict = {k: None for k in OUTPUT_KEYS}
            errors: list[str] = []
            out[ERRORS_KEY] = errors
            outs.append(out)
            try:
                x, sr = self._check_input(audio, sample_rate)
            except Exception as e:  # noqa: BLE001
                errors.append(f"input: {type(e).__name__}: {e}")
                continue
            valid.append((i, x))
            for name, method, keys in self._ESTIMATORS:
                if name == "snr" and self._brouhaha is not None:
                    continue
                self._run(out, errors, name, keys, getattr(self, method), x, sr)
            if self._age_gender is not None:
                continue
            if self._v2g_features is None:
                self._run(out, errors, "gender", self._GENDER_KEYS, self._gender, x, sr)
                continue
            try:
                feats.append((i, self._gender_features(x, sr)))
            except Exception as e:  # noqa: BLE001
                errors.append(f"gender: {type(e).__name__}: {e}")
        if feats:
            try:
                import xgboost

                m = xgboost.DMatrix(np.stack([f for _, f in feats]), feature_names=self._v2g_names, nthread=1)
                p_female = self._v2g_booster.predict(m)  # the model's output is P(female)
            except Exception as e:  # noqa: BLE001
                for i, _ in feats:
                    outs[i][ERRORS_KEY].append(f"gender: {type(e).__name__}: {e}")
            else:
                for (i, _), p in zip(feats, p_female):
                    self._run(outs[i], outs[i][ERRORS_KEY], "gender", self._GENDER_KEYS, self._gender_label, float(p))
        self._model_estimators(outs, valid, sr)
        if texts is not None:
            self._text_estimators(outs, texts, text_source, languages)
        return outs

    def _model_estimators(self, outs: list[dict], valid: list[tuple[int, np.ndarray]], sr: int) -> None:
        n = getattr(self.cfg, "torch_threads", 0)
        if not n or (self._speakers is None and not self._classifiers and self._age_gender is None and self._brouhaha is None):
            return self._model_estimators_run(outs, valid, sr)
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            self._model_estimators_run(outs, valid, sr)
        finally:
            torch.set_num_threads(old)

    def _model_estimators_run(self, outs: list[dict], valid: list[tuple[int, np.ndarray]], sr: int) -> None:
        if self._age_gender is not None:
            self._batched(outs, valid, sr, "gender", ("gender", "gender_score", "gender_source", "age_years", "age_source"),
                          self._age_gender.predict_batch,
                          {"gender": "gender", "gender_score": "gender_score", "gender_source": "source",
                           "age_years": "age_years", "age_source": "source"})
        if self._brouhaha is not None:
            self._batched(outs, valid, sr, "snr", ("snr_db", "snr_source", "c50_db", "c50_source"),
                          self._brouhaha.predict_batch,
                          {"snr_db": "snr_db", "snr_source": "source", "c50_db": "c50_db", "c50_source": "source"})
        if self._speakers is not None:
            self._batched(outs, valid, sr, "speakers", ("n_speakers", "overlap_ratio", "n_speakers_source"),
                          self._speakers.count_batch)
        if self._dnsmos is not None:
            self._batched(outs, valid, sr, "dnsmos", ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_source"),
                          self._dnsmos.predict_batch)
        for kind, clf in self._classifiers.items():
            self._batched(outs, valid, sr, kind, (kind, f"{kind}_score", f"{kind}_source"), clf.predict_batch,
                          {kind: "label", f"{kind}_score": "score", f"{kind}_source": "source"})

    def _text_estimators(self, outs: list[dict], texts: list[str | None], text_source: str,
                         languages: list[str | None] | None) -> None:
        from .metadata_text import text_columns

        rows = [i for i, t in enumerate(texts) if t and t.strip() and outs[i]["speech_span_s"] is not None]
        if not rows:
            return
        want_emotion = self.cfg.emotion_backend == "text-nrc"
        cols = text_columns([texts[i] for i in rows], [outs[i]["speech_span_s"] for i in rows],
                            [languages[i] for i in rows] if languages else None, source=text_source,
                            emotion=want_emotion, default_voice=self.cfg.phonemizer_voice)
        for i, c in zip(rows, cols):
            outs[i][ERRORS_KEY].extend(c.pop(ERRORS_KEY))
            outs[i].update({k: v for k, v in c.items() if v is not None})

    def estimate(self, audio: np.ndarray, sample_rate: int, text: str | None = None) -> dict:
        """Single-row convenience wrapper around :meth:`estimate_batch`."""
        return self.estimate_batch([audio], sample_rate, None if text is None else [text])[0]
