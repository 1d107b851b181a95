"""Metadata stage: per-utterance loudness, SNR, pitch, gender, speech span, speakers, DNSMOS, emotion,
accent, language and speaking rate, one batched call of :class:`MetadataEstimator` per shard.

The estimators are backends (pipeline.backends.metadata, one registry per kind, chosen by the profile's
``metadata`` section); :class:`MetadataEstimator` loads the configured ones once per worker process and
:meth:`MetadataEstimator.estimate_batch` takes a list of mono float32 waveforms and returns one dict per
waveform with exactly these keys (the ``utterances`` columns filled by this stage) plus ``metadata_errors``:

===================  ==========================================================================
loudness_lufs        integrated loudness, ITU-R BS.1770-4 via pyloudnorm (K-weighting, 400 ms
                     blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates). A clip
                     shorter than one 400 ms block is measured as a single block of its own length.
snr_db / snr_source  WADA-SNR (Kim & Stern, Interspeech 2008): blind SNR from the amplitude
/ snr_capped         distribution, assuming clean speech ~ gamma(shape 0.4) and additive Gaussian
                     noise. The G(SNR) look-up table is derived here by numerical integration
                     (pipeline.backends.metadata.snr_wada), not copied. An estimate at or above
                     ``snr_cap_db`` (40 dB) is stored as the cap with ``snr_capped = true`` ("above 40 dB").
pitch_mean_hz /      mean, standard deviation and median of F0 over voiced frames, and the number of
pitch_std_hz /       voiced 10 ms frames. Default backend ``praat`` (Praat's autocorrelation tracker with
pitch_median_hz /    its Viterbi path, praat-parselmouth); ``yin`` (vectorised YIN, scipy only) and
pitch_voiced_frames  ``pyin`` (librosa) by config. Chosen by measurement on the hard known-truth set
/ pitch_source       (bench/bench_metadata.py --only f0).
gender /             from evidence (pipeline.backends.metadata.gender_evidence): the classifier
gender_score /       (voice2gender by default) + the median F0, a calibrated P(female); below
gender_source /      ``gender_min_prob`` the row abstains: gender null, gender_score the probability,
gender_evidence      gender_source "...; abstained: <reason>", gender_evidence (JSON) every piece.
speech_span_s        time from the first to the last speech frame (20 ms frames within 40 dB of the
                     loudest and 6 dB above the clip's noise floor): the denominator of speaking rates.
n_speakers /         speakers in the clip; default backend Resemblyzer GE2E window embeddings +
overlap_ratio /      agglomerative clustering (overlap_ratio null: one embedding per window cannot
n_speakers_source    see overlap); pyannote backends by config (pipeline.backends.metadata.pyannote).
dnsmos_sig/bak/ovrl  DNSMOS P.835 (speechmos ONNX), opt-in (``dnsmos: true``; ~2x realtime per core).
/ dnsmos_source
emotion / _score /   null by default (no speech-emotion model ships in a package). ``text-nrc``: NRC
emotion_source       lexicon over the transcript's words (``reference_text`` here; ``asr_text`` later
                     via pipeline.backends.metadata.text / pipeline.stages.asr), source
                     ``text-lexicon:nrc-emolex:<text column>`` - about the words, not the voice.
                     ``speechbrain``: IEMOCAP wav2vec2 audio model (hub weights).
accent / _score /    null by default (no accent model ships in a package); ``speechbrain``:
accent_source        CommonAccent ECAPA (hub weights).
language / _score /  null here by default (pipeline.stages.asr copies asr_language); ``speechbrain``:
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

The transcript is known here only where the manifest gives ``reference_text``: those rows get their
speaking rate (and text emotion) now; the others get them from ``asr_text`` later
(``pipeline.stages.asr.enrich`` at the end of the ASR stage; export runs it again, a no-op then).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from pipeline.backends.metadata import load_estimator
from pipeline.backends.metadata.base import ClipEstimator, Estimator
from pipeline.core.audio import decode_bytes
from pipeline.core.config import MetadataConfig

OUTPUT_KEYS = (
    "loudness_lufs",
    "snr_db", "snr_source", "snr_capped",
    "pitch_mean_hz", "pitch_std_hz", "pitch_median_hz", "pitch_voiced_frames", "pitch_source",
    "gender", "gender_score", "gender_source", "gender_evidence",
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
    ("snr", ("snr_db", "snr_source")),  # snr_capped: wada only
    ("pitch", ("pitch_mean_hz", "pitch_std_hz", "pitch_median_hz", "pitch_voiced_frames", "pitch_source")),
    ("gender", ("gender_score", "gender_source")),  # gender itself may be null (abstained)
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

#: the kinds in the order they are loaded and run (per row, metadata_errors lists failures in this order):
#: the per-clip estimators (loudness, WADA SNR, pitch, span) first, then the model-backed ones on the whole
#: batch; gender is listed before snr so that a model SNR (brouhaha) runs after the gender model
RUN_ORDER = ("loudness", "gender", "snr", "pitch", "span", "speakers", "dnsmos", "emotion", "accent", "language")


class MetadataEstimator:
    """Loads every configured estimator once; :meth:`estimate_batch` never raises for per-row problems.

    Per-clip estimators (loudness, SNR, pitch, speech span) run clip by clip (numpy/scipy, hundreds of
    times realtime); every model-backed estimator (voice2gender's booster, speaker embeddings, DNSMOS,
    speechbrain / audeering / brouhaha / pyannote models) takes the whole batch at once.
    """

    def __init__(self, cfg: MetadataConfig | None = None):
        self.cfg = cfg = cfg or MetadataConfig()
        #: kind -> loaded estimator (kinds switched off or handled elsewhere are absent)
        self.estimators: dict[str, Estimator] = {}
        for kind in RUN_ORDER:
            est = load_estimator(kind, cfg)
            if est is not None:
                self.estimators[kind] = est
        self._order = sorted(self.estimators.values(), key=lambda e: not isinstance(e, ClipEstimator))
        if cfg.emotion_backend == "text-nrc":
            from pipeline.backends.metadata.text import nrc_lexicon

            nrc_lexicon()  # fail at load time, not per row, when nrclex is missing

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

    def _batched(self, outs: list[dict], valid: list[tuple[int, np.ndarray]], sr: int, est: Estimator) -> None:
        """Run one estimator over the valid rows; per-row results or exceptions; a failure of the whole
        call is reported on every row."""
        if not valid:
            return None
        name, keys, mapping = est.name, tuple(est.keys), est.columns
        try:
            results = est.predict_batch([x for _, x in valid], sr)
            if len(results) != len(valid):
                raise RuntimeError(f"{len(results)} results for {len(valid)} clips")
        except Exception as e:  # noqa: BLE001
            for i, _ in valid:
                outs[i][ERRORS_KEY].append(f"{name}: {type(e).__name__}: {e}")
            return None
        for (i, _), r in zip(valid, results):
            if mapping is not None and isinstance(r, dict):
                r = {k: r[src] for k, src in mapping.items()}
            self._run(outs[i], outs[i][ERRORS_KEY], name, keys, lambda v: v, r)
        return results

    @contextmanager
    def _threads(self, est: Estimator):
        """torch's intra-op threads set to ``torch_threads`` around a torch estimator (0: torch's default)."""
        n = getattr(self.cfg, "torch_threads", 0)
        if not n or not est.uses_torch:
            yield
            return
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def estimate_batch(self, audios: list[np.ndarray], sample_rate: int, texts: list[str | None] | None = None,
                       text_source: str = "reference_text", languages: list[str | None] | None = None) -> list[dict]:
        """One dict per audio (mono float32 in [-1, 1] at ``sample_rate``), keys OUTPUT_KEYS +
        ``metadata_errors``. ``texts``: the rows' transcripts where known (``reference_text``), for
        speaking rate and text emotion; ``languages``: language codes for the phonemizer. Failures
        are per row and per estimator (values None, reason listed)."""
        outs: list[dict] = []
        valid: list[tuple[int, np.ndarray]] = []
        sr = sample_rate
        pitch_results = None
        for i, audio in enumerate(audios):
            out: dict = {k: None for k in OUTPUT_KEYS}
            out[ERRORS_KEY] = []
            outs.append(out)
            try:
                x, sr = self._check_input(audio, sample_rate)
            except Exception as e:  # noqa: BLE001
                out[ERRORS_KEY].append(f"input: {type(e).__name__}: {e}")
                continue
            valid.append((i, x))
        for est in self._order:
            if est is self.estimators.get("gender") and hasattr(est, "use_pitch") and "pitch" in self.estimators:
                est.use_pitch(pitch_results)  # the gender evidence reads this batch's F0 (pitch runs first)
            with self._threads(est):
                results = self._batched(outs, valid, sr, est)
            if est is self.estimators.get("pitch"):
                pitch_results = results
        if texts is not None:
            self._text_estimators(outs, texts, text_source, languages)
        return outs

    def _text_estimators(self, outs: list[dict], texts: list[str | None], text_source: str,
                         languages: list[str | None] | None) -> None:
        from pipeline.backends.metadata.text import text_columns

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


class MetadataStage:
    name = "metadata"
    reads = "ingest"
    writes = "utterances"

    def __init__(self, estimator):
        self.estimator = estimator

    @classmethod
    def from_profile(cls, profile) -> "MetadataStage":
        return cls(MetadataEstimator(profile.metadata))

    def process(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        return annotate(self.estimator, rows)


def annotate(estimator, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    audios = [decode_bytes(r["audio"]["bytes"])[0] for r in rows]
    texts = [r.get("reference_text") for r in rows]
    metas = estimator.estimate_batch(audios, rows[0]["sample_rate"], texts=texts, text_source="reference_text")
    out = []
    for row, meta in zip(rows, metas):
        out.append({**row, **{k: v for k, v in meta.items() if k != "metadata_errors"}})
    return out, []
