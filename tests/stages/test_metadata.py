"""pipeline.stages.metadata (MetadataEstimator: the configured estimators together, and the stage) on real
synthetic audio with known truth (built at run time, ~30 s on 2 cores).

Speech: espeak-ng (en-us male, +mN male variants, +fN/named female variants) and the embedded Piper
voice en_US-joe (male), resampled to 16 kHz. Bounds below are what was measured with
bench/bench_metadata.py plus a margin; the comment next to each says what was measured.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.core.config import MetadataConfig
from pipeline.stages.metadata import ERRORS_KEY, KEY_GROUPS, OUTPUT_KEYS, MetadataEstimator
from tests.fixtures_metadata import synth as S
from tests.fixtures_metadata.fixtures import (  # noqa: F401 (fixtures)
    FEMALE_ESPEAK,
    MALE_ESPEAK,
    RATE_TEXTS,
    RATES_WPM,
    SR,
    needs_espeak,
    rate_clips,
    speech,
)


@pytest.fixture(scope="session")
def est() -> MetadataEstimator:
    """The acoustic estimators (loudness, SNR, pitch, span, gender, text features): no speaker model,
    so the many one-clip calls below stay cheap."""
    return MetadataEstimator(MetadataConfig(speakers_backend="none"))


@pytest.fixture(scope="session")
def full() -> MetadataEstimator:
    """The default configuration, speaker counting included."""
    return MetadataEstimator(MetadataConfig())


def _finite_or_none(d: dict) -> bool:
    return all(v is None or not isinstance(v, float) or math.isfinite(v) for v in d.values())


# ---- SNR on speech --------------------------------------------------------------------------------
SNRS = [0, 5, 10, 20]
# max |error| per SNR; measured over 6 sentences x 4 noise seeds (bench): en-us 0.6/0.4/0.7/2.8 dB,
# en-us+f4 0.7/0.8/0.9/3.4 dB, piper 1.7/1.7/2.3/5.4 dB (Piper's own noise floor reads 21-41 dB,
# so its true SNR at "20 dB" is lower than 20)
SNR_BOUNDS = {"en-us": (1.5, 1.5, 1.5, 3.5), "en-us+f4": (1.5, 1.5, 1.5, 4.0), "piper": (3.0, 3.0, 3.0, 6.5)}


@needs_espeak
@pytest.mark.parametrize("voice", list(SNR_BOUNDS))
def test_snr_white_noise_known_snr(est, speech, voice):
    for k, clean in enumerate(speech[voice]):
        got = []
        for snr, bound in zip(SNRS, SNR_BOUNDS[voice]):
            y = S.add_white_noise(clean, snr, seed=10 * k + snr)
            r = est.estimate_batch([y], SR)[0]
            assert r["snr_source"] == "wada-snr"
            assert abs(r["snr_db"] - snr) <= bound, (voice, k, snr, r["snr_db"])
            got.append(r["snr_db"])
        assert np.all(np.diff(got) > 2.0), (voice, got)  # monotonic, clearly separated


# ---- pitch ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def yin_est() -> MetadataEstimator:
    return MetadataEstimator(MetadataConfig(speakers_backend="none", pitch_backend="yin"))


@pytest.mark.parametrize("backend", ["praat", "yin"])
@pytest.mark.parametrize("f0", [70, 120, 200, 310])
@pytest.mark.parametrize("harmonics", [1, 8])
@pytest.mark.parametrize("snr", [None, 10, 5])
def test_pitch_tones(est, yin_est, backend, f0, harmonics, snr):
    x = S.tone(f0, 1.5, harmonics)
    if snr is not None:
        x = S.add_white_noise(x, snr, seed=f0, active_only=False)
    r = (est if backend == "praat" else yin_est).estimate_batch([x], SR)[0]
    assert r["pitch_source"] == "yin" if backend == "yin" else r["pitch_source"].startswith("praat-parselmouth-")
    # the brief's bound is 2 %; measured <= 0.1 % clean (so 0.5 % is asserted there), <= 1 % at 10 and 5 dB
    assert r["pitch_mean_hz"] == pytest.approx(f0, rel=0.005 if snr is None else 0.02)
    assert r["pitch_median_hz"] == pytest.approx(f0, rel=0.005 if snr is None else 0.02)
    # 1.5 s of tone: ~140 frames of 10 ms; YIN's voicing gate drops about half of them at 5 dB (measured 74)
    assert r["pitch_voiced_frames"] >= (100 if backend == "praat" else 50)
    assert r["pitch_std_hz"] < (0.01 if snr is None else 0.05) * f0


@pytest.mark.parametrize("f0", [90, 240])
def test_pitch_tones_pyin_backend(f0):
    x = S.tone(f0, 1.5, 8)
    e = MetadataEstimator(MetadataConfig(pitch_backend="pyin"))
    r = e.estimate_batch([x], SR)[0]
    assert r["pitch_source"].startswith("librosa-pyin")
    assert r["pitch_mean_hz"] == pytest.approx(f0, rel=0.02)


def test_pitch_range_from_config():
    """fmin/fmax come from the config: a 50 Hz tone is below the default fmin=60 (no pitch, reason
    given) and found with fmin=40. Above fmax the search range only holds subharmonics, so a 300 Hz
    tone with fmax=250 reads as 150 Hz (a documented limitation of any period-domain tracker)."""
    x = S.tone(50, 1.5, 1)
    r = MetadataEstimator(MetadataConfig()).estimate_batch([x], SR)[0]
    assert r["pitch_mean_hz"] is None and r["pitch_source"] is None
    assert any(m.startswith("pitch:") for m in r[ERRORS_KEY])
    r = MetadataEstimator(MetadataConfig(pitch_fmin=40)).estimate_batch([x], SR)[0]
    assert r["pitch_mean_hz"] == pytest.approx(50, rel=0.02)
    r = MetadataEstimator(MetadataConfig(pitch_fmax=250)).estimate_batch([S.tone(300, 1.5, 1)], SR)[0]
    assert r["pitch_mean_hz"] == pytest.approx(150, rel=0.02)


@needs_espeak
def test_pitch_male_below_female(est, speech):
    mean = {v: [est.estimate_batch([a], SR)[0]["pitch_mean_hz"] for a in clips] for v, clips in speech.items()}
    male = [m for v in ["piper", *MALE_ESPEAK] for m in mean[v]]
    female = [m for v in FEMALE_ESPEAK for m in mean[v]]
    # measured: male voices 87-107 Hz, female variants 173-270 Hz
    assert max(male) < 130 and min(male) > 70, mean
    assert min(female) > 150 and max(female) < 320, mean
    assert max(male) < min(female)


@needs_espeak
def test_loudness_gain_and_short_clip(est, speech):
    a = speech["en-us"][0]
    r0, r6 = est.estimate_batch([a, a * 10 ** (6 / 20)], SR)
    assert r6["loudness_lufs"] - r0["loudness_lufs"] == pytest.approx(6.0, abs=0.01)
    import pyloudnorm

    assert r0["loudness_lufs"] == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(a.astype(np.float64)), abs=1e-6)
    # a 0.2 s sine (shorter than one 400 ms block) reads as the long sine
    t = np.arange(2 * SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    long_, short = est.estimate_batch([x, x[: int(0.2 * SR)]], SR)
    assert short["loudness_lufs"] == pytest.approx(long_["loudness_lufs"], abs=0.05)


# ---- gender ---------------------------------------------------------------------------------------
@needs_espeak
def test_gender_voices(est, speech):
    """Measured (bench, 22 voices x 6 sentences, clean and 10/5/0 dB white noise): 132/132 correct.
    This subset must stay at 100 % clean and at 10 dB."""
    truth = {"piper": "male", **{v: "male" for v in MALE_ESPEAK}, **{v: "female" for v in FEMALE_ESPEAK}}
    wrong, abstained, n = [], [], 0
    for v, clips in speech.items():
        for k, a in enumerate(clips):
            for snr in (None, 10):
                x = a if snr is None else S.add_white_noise(a, snr, seed=k)
                r = est.estimate_batch([x], SR)[0]
                assert r["gender_source"].startswith("evidence:voice2gender-0.1.1+f0:praat-parselmouth-")
                assert 0.5 <= r["gender_score"] <= 1.0
                n += 1
                if r["gender"] is None:
                    abstained.append((v, k, snr, r["gender_source"]))
                elif r["gender"] != truth[v]:
                    wrong.append((v, k, snr, r["gender"], r["gender_score"]))
    assert not wrong
    assert len(abstained) <= 0.1 * n, abstained


@needs_espeak
def test_gender_batched_equals_voice2gender_predict(est, speech):
    import voice2gender

    import json

    clips = [speech["piper"][0], speech["en-us+f3"][0], speech["en-us+m7"][1]]
    raw = MetadataEstimator(MetadataConfig(speakers_backend="none", gender_fusion=False))
    rows, raw_rows = est.estimate_batch(clips, SR), raw.estimate_batch(clips, SR)
    for a, r, q in zip(clips, rows, raw_rows):
        p = voice2gender.predict([(np.clip(a, -1, 1) * 32767).astype("<i2").tobytes()], sample_rate=SR)
        exp = "female" if p["female_probability"] >= 0.5 else "male"
        assert q["gender"] == exp and q["gender_source"] == "voice2gender-0.1.1" and q["gender_evidence"] is None
        assert q["gender_score"] == pytest.approx(max(p["female_probability"], p["male_probability"]), abs=1e-6)
        ev = json.loads(r["gender_evidence"])  # the fused row carries the classifier's own probability
        assert ev["classifier_p_female"] == pytest.approx(p["female_probability"], abs=1e-4)
        assert ev["f0_median_hz"] == pytest.approx(r["pitch_median_hz"], abs=0.05) and r["gender"] == exp


# ---- robustness -----------------------------------------------------------------------------------
#: what the default (embedded) configuration fills for any clip with speech
CORE_KEYS = ("loudness_lufs", "snr_db", "snr_source", "pitch_mean_hz", "pitch_std_hz", "pitch_source", "gender",
             "gender_score", "gender_source", "speech_span_s", "n_speakers", "n_speakers_source")


def _check_row(r: dict) -> None:
    assert set(r) == set(OUTPUT_KEYS) | {ERRORS_KEY}
    assert isinstance(r[ERRORS_KEY], list) and all(isinstance(m, str) for m in r[ERRORS_KEY])
    assert _finite_or_none(r)
    for _, group in KEY_GROUPS:
        assert len({r[k] is None for k in group}) == 1, r  # an estimator's keys are all set or all None


def test_silence(full):
    r = full.estimate_batch([np.zeros(SR, np.float32)], SR)[0]
    _check_row(r)
    assert all(r[k] is None for k in OUTPUT_KEYS)
    # one reason per failed estimator, in the order they run: per-clip ones, then the models on the batch
    assert [m.split(":")[0] for m in r[ERRORS_KEY]] == ["loudness", "snr", "pitch", "span", "gender", "speakers"]


@needs_espeak
def test_short_clip(est, speech):
    a = speech["en-us"][0]
    r = est.estimate_batch([a[SR // 2: SR // 2 + SR // 10]], SR)[0]  # 0.1 s of speech
    _check_row(r)
    assert r["loudness_lufs"] is not None and r["snr_db"] is not None
    assert r["gender"] is None and any("2048" in m for m in r[ERRORS_KEY])  # voice2gender needs 2048 samples


@needs_espeak
def test_mixed_batch_never_raises_and_keeps_order(full, speech):
    est = full
    rng = np.random.default_rng(0)
    a, b = speech["piper"][0], speech["en-us+f3"][1]
    batch = [
        a,
        np.zeros(0, np.float32),  # empty
        a[:800],  # 50 ms
        np.array([np.nan] * 100 + [0.0] * 4000, np.float32),  # NaN
        np.zeros(3 * SR, np.float32),  # silence
        (0.05 * rng.standard_normal(2 * SR)).astype(np.float32),  # noise only
        np.clip(b * 8, -1, 1),  # hard clipped
        b.reshape(-1, 1),  # (n, 1) column
        np.full(SR, 1e-9, np.float32),  # DC at -180 dBFS
        b,
        np.tile(a, 3),  # ~10 s
    ]
    rows = est.estimate_batch(batch, SR)
    assert len(rows) == len(batch)
    for r in rows:
        _check_row(r)
    assert rows[1][ERRORS_KEY] == ["input: ValueError: empty audio"]
    assert rows[3][ERRORS_KEY] and rows[3]["loudness_lufs"] is None
    assert rows[5]["pitch_mean_hz"] is None  # white noise has no pitch
    assert rows[5]["snr_db"] < 0  # ... and reads as noise
    for i in (0, 6, 7, 9, 10):
        assert rows[i][ERRORS_KEY] == [] and all(rows[i][k] is not None for k in CORE_KEYS), rows[i]
        assert rows[i]["n_speakers"] == 1
    # the same audio gives the same answer alone and in a batch, in order
    assert est.estimate_batch([a], SR)[0] == rows[0]
    assert est.estimate_batch([b], SR)[0] == rows[9] == rows[7]
    assert rows[0]["gender"] == "male" and rows[9]["gender"] == "female"


@needs_espeak
def test_gender_model_failure_is_contained(est, speech, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("booster exploded")

    monkeypatch.setattr(est.estimators["gender"].classifier.booster, "predict", boom)
    rows = est.estimate_batch([speech["en-us"][0], speech["en-us+f1"][0]], SR)
    for r in rows:
        _check_row(r)
        assert r["gender"] is None and r["gender_source"] is None
        assert r["loudness_lufs"] is not None and r["pitch_mean_hz"] is not None and r["snr_db"] is not None
        assert any("booster exploded" in m for m in r[ERRORS_KEY])


def test_bad_sample_rate_and_config():
    e = MetadataEstimator(MetadataConfig())
    r = e.estimate_batch([S.tone(100)], 0)[0]
    assert all(r[k] is None for k in OUTPUT_KEYS) and r[ERRORS_KEY][0].startswith("input:")
    with pytest.raises(ValueError):
        MetadataEstimator(MetadataConfig(pitch_fmin=300, pitch_fmax=200))


# ---- speaking rate --------------------------------------------------------------------------------
# espeak-ng's -s is its own "words per minute" (a nominal word length, not these sentences' words):
# measured words/s = 1.30 x wpm/60 on every clip (1.295-1.317 over 2 voices x 4 sentences x 3 rates)
ESPEAK_WPS_FACTOR = 1.30


@needs_espeak
def test_speaking_rate_espeak_known_rates(est, rate_clips):
    """espeak-ng at -s 120/170/220: words/s and phonemes/s increase with the rate, words/s is
    1.30 x nominal (+-6 %), and the ratio between two rates is the nominal one (+-4 %)."""
    keys = list(rate_clips)
    rows = est.estimate_batch([rate_clips[k] for k in keys], SR, texts=[RATE_TEXTS[k[2]] for k in keys])
    got = {k: r for k, r in zip(keys, rows)}
    for v in ("en-us", "en-us+f3"):
        for s in range(len(RATE_TEXTS)):
            wps = [got[(v, w, s)]["speaking_rate_wps"] for w in RATES_WPM]
            pps = [got[(v, w, s)]["speaking_rate_pps"] for w in RATES_WPM]
            assert np.all(np.diff(wps) > 0) and np.all(np.diff(pps) > 0), (v, s, wps, pps)
            for w, x in zip(RATES_WPM, wps):
                assert x / (w / 60) == pytest.approx(ESPEAK_WPS_FACTOR, rel=0.06), (v, w, s, x)
            assert wps[2] / wps[0] == pytest.approx(220 / 120, rel=0.04)
            r = got[(v, 170, s)]
            assert r["n_words"] == len(RATE_TEXTS[s].split())
            assert r["speaking_rate_pps"] / r["speaking_rate_wps"] == pytest.approx(r["n_phonemes"] / r["n_words"])
            assert r["speaking_rate_source"].startswith("reference_text+espeak-ng-") and r["speaking_rate_source"].endswith(":en-us")


# ---- number of speakers ---------------------------------------------------------------------------
def _concat(*clips: np.ndarray) -> np.ndarray:
    gap = np.zeros(SR // 4, np.float32)
    return np.concatenate([c for a in clips for c in (a, gap)])


@needs_espeak
def test_speaker_count_known_voices(full, speech):
    est = full
    """Concatenations of 1, 2 and 3 different voices (two sentences each, ~7 s per voice).
    Measured (bench): 100 % on distinct voices (Piper joe, espeak male, espeak female, Piper x1.25)
    for 1/2/3 voices; on near-identical espeak variants 88 % (2) and 67 % (3), never over-counted."""
    p, m, f = speech["piper"], speech["en-us"], speech["en-us+f3"]
    cases = [
        (_concat(*p), 1), (_concat(*m), 1), (_concat(*f), 1), (_concat(*p, *p), 1),
        (_concat(*p, *f), 2), (_concat(*m, *f), 2), (_concat(*f, *p), 2),
        (_concat(*p, *m, *f), 3), (_concat(*f, *p, *m), 3),
    ]
    rows = est.estimate_batch([a for a, _ in cases], SR)
    got = [r["n_speakers"] for r in rows]
    assert got == [n for _, n in cases], got
    for r in rows:
        assert r["n_speakers_source"].startswith("resemblyzer-ge2e-0.1.4:ahc@0.70") and r["overlap_ratio"] is None


# ---- DNSMOS (opt-in) --------------------------------------------------------------------------------
@needs_espeak
def test_dnsmos_batched_equals_speechmos(speech):
    from speechmos import dnsmos

    assert MetadataConfig().dnsmos is False  # ~1.3 s of CPU per 9 s window: opt-in
    e = MetadataEstimator(MetadataConfig(dnsmos=True, speakers_backend="none", emotion_backend="none"))
    clean = speech["en-us"][0]
    noisy = S.add_white_noise(clean, 0, seed=1)
    rows = e.estimate_batch([clean, noisy, np.zeros(SR, np.float32)], SR)
    ref = dnsmos.run(noisy, SR)  # the reference code, one clip
    assert rows[1]["dnsmos_source"] == "dnsmos-p835-speechmos-0.0.1.1"
    for k in ("sig", "bak", "ovrl"):
        assert rows[1][f"dnsmos_{k}"] == pytest.approx(float(ref[f"{k}_mos"]), abs=1e-4)
    assert rows[0]["dnsmos_bak"] > rows[1]["dnsmos_bak"] + 1.0  # measured 3.2 clean vs 1.6 at 0 dB
    assert rows[2]["dnsmos_sig"] is None and any(m.startswith("dnsmos:") for m in rows[2][ERRORS_KEY])


# ---- production backends through the estimator: models built with random weights --------------------
def test_audeering_age_gender_from_local_checkpoint(tmp_path):
    """The model card's AgeGenderModel with a small random wav2vec2, saved and loaded with
    from_pretrained; a padded batch gives the same numbers as one clip at a time."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

    from pipeline.backends.metadata.audeering import age_gender_model_class

    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                         do_stable_layer_norm=True, final_dropout=0.1)
    torch.manual_seed(0)
    age_gender_model_class()(cfg).save_pretrained(tmp_path)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(tmp_path)
    # the wrapper itself (gender_fusion off): noise clips have no F0, so the evidence fusion would abstain
    e = MetadataEstimator(MetadataConfig(gender_backend="audeering", gender_model=str(tmp_path), speakers_backend="none",
                                         gender_fusion=False))
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (SR, int(1.5 * SR), int(2.5 * SR))]
    rows = e.estimate_batch(clips + [np.zeros(200, np.float32)], SR)
    for a, r in zip(clips, rows):
        one = e.estimate_batch([a], SR)[0]
        assert r["gender"] in ("female", "male", "child") and r["gender"] == one["gender"]
        assert r["gender_score"] == pytest.approx(one["gender_score"], abs=1e-5)
        assert 0 <= r["age_years"] <= 100 and r["age_years"] == pytest.approx(one["age_years"], abs=1e-4)
        assert r["gender_source"] == r["age_source"] == f"audeering:{tmp_path.name}"
    assert rows[3]["gender"] is None and any(m.startswith("gender:") for m in rows[3][ERRORS_KEY])


# ---- text emotion and the stage -------------------------------------------------------------------------
@needs_espeak
def test_text_emotion_backend_from_reference_text(speech):
    """Opt-in text emotion (emotion_backend: text-nrc) from the row's transcript; default: none."""
    assert MetadataConfig().emotion_backend == "none"
    e = MetadataEstimator(MetadataConfig(speakers_backend="none", emotion_backend="text-nrc"))
    a = speech["en-us"][0]
    rows = e.estimate_batch([a, a, a], SR, texts=["I am so furious and angry about this outrageous insult", None, ""])
    assert rows[0]["emotion"] == "angry" and rows[0]["emotion_source"] == "text-lexicon:nrc-emolex:reference_text"
    assert rows[0]["speaking_rate_source"].startswith("reference_text+espeak-ng")
    for r in rows[1:]:
        _check_row(r)
        assert r["emotion"] is None and r["speaking_rate_wps"] is None and r[ERRORS_KEY] == []


def test_configured_estimators_only(est):
    """Kinds switched off (or handled elsewhere) load nothing; the rest run per clip, then per batch."""
    assert list(est.estimators) == ["loudness", "gender", "snr", "pitch", "span"]
    assert [e.name for e in est._order] == ["loudness", "snr", "pitch", "span", "gender"]
    e = MetadataEstimator(MetadataConfig(speakers_backend="none", emotion_backend="text-nrc", language_backend="asr"))
    assert "emotion" not in e.estimators and "language" not in e.estimators and "dnsmos" not in e.estimators


def test_stage_annotates_rows(est):
    """MetadataStage.process: the decoded rows get the estimator's columns (not metadata_errors), no rejects."""
    from pipeline.core.audio import encode_flac
    from pipeline.stages.metadata import MetadataStage

    x = S.tone(150, 1.5, 8)
    rows = [{"id": "a", "sample_rate": SR, "audio": {"bytes": encode_flac(x, SR)}, "reference_text": "hello there"}]
    out, rejects = MetadataStage(est).process(rows)
    assert rejects == [] and len(out) == 1 and out[0]["id"] == "a" and ERRORS_KEY not in out[0]
    assert set(OUTPUT_KEYS) <= set(out[0]) and out[0]["pitch_mean_hz"] == pytest.approx(150, rel=0.02)
    assert MetadataStage(est).process([]) == ([], [])


# ---- issue 17: hard voices, abstention, capped SNR ------------------------------------------------------
@needs_espeak
def test_rough_and_creaky_voices_keep_their_gender(est):
    """The voices that broke YIN + voice2gender (a rough female variant read an octave low and 'male' with
    p = 0.999): with Praat F0 + evidence fusion no clip is answered wrong, clean or in noise."""
    from tests.fixtures_metadata import hardset as H

    clips, truth = [], []
    for v in ("f2", "f1", "f3", "m1", "croak"):
        for k in (0, 3):
            a, _ = H.espeak_pair(H.TEXTS[k], v)
            for snr in (None, 10, 5):
                clips.append(a if snr is None else S.add_white_noise(a, snr, seed=k + (snr or 0)))
                truth.append((v, snr, H.variant_gender(v)))
    rows = est.estimate_batch(clips, SR)
    wrong = [(t, r["gender"], r["gender_evidence"]) for t, r in zip(truth, rows) if r["gender"] not in (None, t[2])]
    assert not wrong
    answered = [r for r in rows if r["gender"] is not None]
    assert len(answered) >= 0.8 * len(rows), [(t, r["gender_source"]) for t, r in zip(truth, rows) if r["gender"] is None]
    for t, r in zip(truth, rows):
        if t[0] in ("f2", "f1", "f3"):  # the robust F0 sits in the female range, not an octave down
            assert r["pitch_median_hz"] > 150, (t, r["pitch_median_hz"])


@needs_espeak
def test_whisper_abstains_with_reason(est):
    """Whispered speech has no F0; voice2gender reads it as male with p ~ 0.99 whatever the speaker: the estimate
    abstains (gender null) and says why, the probability is kept in gender_score."""
    from tests.fixtures_metadata import hardset as H

    rows = est.estimate_batch([H.espeak_pair(H.TEXTS[0], v)[0] for v in ("whisperf", "whisper")], SR)
    for r in rows:
        _check_row(r)
        assert r["gender"] is None and "abstained: no reliable F0" in r["gender_source"]
        assert 0.5 <= r["gender_score"] < MetadataConfig().gender_min_prob
        assert '"decision": "abstained"' in r["gender_evidence"]


@needs_espeak
def test_snr_cap_is_flagged(est, speech):
    cap = MetadataConfig().snr_cap_db
    clean = est.estimate_batch([speech["en-us"][0]], SR)[0]
    assert clean["snr_capped"] is True and clean["snr_db"] == cap  # WADA reads 100 dB (its table top) here
    noisy = est.estimate_batch([S.add_white_noise(speech["en-us"][0], 10, seed=3)], SR)[0]
    assert noisy["snr_capped"] is False and noisy["snr_db"] < cap


def test_seed_and_label_tasks_leave_out_abstained_gender_and_say_clean():
    import json

    from pipeline.core.config import LLMConfig
    from pipeline.stages.llm.label_tasks import LabelTasks
    from pipeline.stages.llm.seed import seed_description

    row = {"id": "u1", "duration_s": 4.0, "gender": None, "gender_score": 0.7, "pitch_mean_hz": 205.0,
           "gender_source": "evidence:x+f0:y; abstained: P(female) 0.70 < 0.85", "snr_db": 40.0, "snr_capped": True,
           "snr_source": "wada-snr", "pitch_source": "praat", "audio": {"bytes": b""}}
    seed = seed_description(row, "hello there my friend")
    assert "Gender" not in seed and "SNR: clean," in seed and "dB" not in seed
    labelled = {**row, "labels_json": json.dumps({"gender": "female"})}
    assert "Gender: Female" in seed_description(labelled, "hello there my friend")  # a manifest label wins
    noisy = seed_description({**row, "snr_db": 12.4, "snr_capped": False}, "hello there my friend")
    assert "SNR: noisy (12 dB)" in noisy
    lt = LabelTasks(LLMConfig(label_tasks=["gender", "noise_level"]), "test")
    for r in (row, {**row, "snr_capped": None, "snr_db": 12.0}):
        out, rejects = lt.process([r], {"u1": ("hello there my friend", "asr")}, {})
        assert [o["task"] for o in out] == ["noise_level"] and rejects == []
        assert "None" not in out[0]["response"]
        if r["snr_capped"]:
            assert "dB" not in out[0]["response"] and "clean" in out[0]["response"].lower()
    out, _ = lt.process([labelled], {"u1": ("hello there my friend", "asr")}, {})
    assert [o["task"] for o in out] == ["gender", "noise_level"] and out[0]["label_source"] == "labels_json.gender"


@needs_espeak
def test_until_exports_a_prefix_and_a_later_run_continues(tmp_path):
    """--until metadata exports tags only (utterances + rejects, card, manifest listing the stages); a later run
    --until asr reuses the finished shards and re-exports utterances with the ASR columns."""
    import json

    import pyarrow.parquet as pq
    import soundfile as sf

    from pipeline.cli import run_direct
    from pipeline.core.config import load_profile
    from pipeline.dataset.export import stages_until

    assert stages_until("asr") == ("ingest", "metadata", "asr") and len(stages_until(None)) >= 5
    with pytest.raises(ValueError):
        stages_until("nope")
    sf.write(tmp_path / "a.wav", S.espeak("The library opens at nine and closes at five.", "en-us+f2"), SR)
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "a.wav", "text": "The library opens at nine and closes at five."}) + "\n")
    prof = load_profile("en", input=str(tmp_path / "m.jsonl"), **{"tts.input": None})
    out = tmp_path / "out"
    run_direct(prof, str(out), report=False, until="metadata")
    d = out / "en"
    man = json.loads((d / "_manifest.json").read_text())
    assert man["stages"] == ["ingest", "metadata"] and man["tables"]["instructions"]["rows"] == 0
    assert "Partial run" in (d / "README.md").read_text()
    rows = pq.read_table(d / "utterances").to_pylist()
    assert len(rows) == 1 and rows[0]["pitch_source"].startswith("praat") and rows[0]["asr_text"] is None
    assert rows[0]["gender"] in ("female", None) and rows[0]["pitch_bin"] is not None
    meta_part = d / "_work" / "metadata" / "part-00000.parquet"
    before = meta_part.stat().st_mtime_ns
    run_direct(prof, str(out), report=False, until="asr")
    assert meta_part.stat().st_mtime_ns == before  # continued, not redone
    man = json.loads((d / "_manifest.json").read_text())
    assert man["stages"] == ["ingest", "metadata", "asr"]
    rows = pq.read_table(d / "utterances").to_pylist()
    assert len(rows) == 1 and rows[0]["asr_text"] and "library" in rows[0]["asr_text"].lower()
