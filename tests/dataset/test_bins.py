"""pipeline.dataset.bins: dataset-wide text bins (quantile edges, pitch within gender, reference fallback),
filling ASR-derived columns, the table/run plumbing used by export."""
from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.dataset import bins

from pipeline.core import schema

from pipeline.core import store
from pipeline.core.config import MetadataConfig

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = "male" if i % 2 == 0 else "female"
        base = 115.0 if g == "male" else 205.0
        out.append({"id": f"u{i}", "gender": g, "pitch_mean_hz": float(base * 2 ** (rng.normal(0, 3) / 12)),
                    "pitch_std_hz": float(rng.uniform(5, 40)), "speaking_rate_pps": float(rng.uniform(8, 18)),
                    "snr_db": float(rng.uniform(0, 60)), "c50_db": None})
    return out


def test_quantile_bins_have_equal_populations():
    rows = _rows(700)
    edges = bins.compute_edges(rows, MetadataConfig())
    bins.label_rows(rows, edges)
    for kind in ("speaking_rate", "snr", "pitch_std"):
        assert edges["bins"][kind]["method"] == "quantile" and edges["bins"][kind]["n"] == 700
        counts = [sum(r[bins.BIN_COLUMNS[kind]] == lab for r in rows) for lab in bins.LABELS[kind]]
        assert all(abs(c - 100) <= 2 for c in counts), (kind, counts)
    # monotone: a faster row never gets a slower label
    order = sorted(rows, key=lambda r: r["speaking_rate_pps"])
    idx = [bins.LABELS["speaking_rate"].index(r["speaking_rate_bin"]) for r in order]
    assert idx == sorted(idx)
    assert all(r["c50_bin"] is None for r in rows) and edges["bins"]["c50"]["method"] == "reference"


def test_pitch_is_binned_within_gender():
    rows = _rows(700)
    edges = bins.compute_edges(rows, MetadataConfig())
    g = edges["bins"]["pitch"]["groups"]
    assert g["male"]["method"] == g["female"]["method"] == "quantile"
    # each gender spreads over all seven labels
    for gender in ("male", "female"):
        labs = {bins.label_row(r, edges)["pitch_bin"] for r in rows if r["gender"] == gender}
        assert labs == set(bins.LABELS["pitch"])
    # 150 Hz is high for a man and low for a woman
    assert bins.label_row({"gender": "male", "pitch_mean_hz": 150.0}, edges)["pitch_bin"] in ("quite high pitch", "very high pitch")
    assert bins.label_row({"gender": "female", "pitch_mean_hz": 150.0}, edges)["pitch_bin"] in ("quite low pitch", "very low pitch")
    # no gender: edges of all rows
    assert bins.label_row({"gender": None, "pitch_mean_hz": 1000.0}, edges)["pitch_bin"] == "very high pitch"


def test_reference_edges_for_small_datasets():
    rows = _rows(10)
    edges = bins.compute_edges(rows, MetadataConfig())  # bins_min_rows 50
    assert all(edges["bins"][k]["method"] == "reference" for k in ("speaking_rate", "snr", "pitch_std", "c50"))
    lab = lambda **kw: bins.label_row({"gender": "male", **kw}, edges)  # noqa: E731
    assert lab(snr_db=2.0)["snr_bin"] == "very noisy" and lab(snr_db=60.0)["snr_bin"] == "very clear"
    assert lab(speaking_rate_pps=7.0)["speaking_rate_bin"] == "very slowly"
    assert lab(speaking_rate_pps=12.5)["speaking_rate_bin"] == "moderate speed"
    assert lab(pitch_mean_hz=120.0)["pitch_bin"] == "moderate pitch"
    assert bins.label_row({"gender": "female", "pitch_mean_hz": 120.0}, edges)["pitch_bin"] == "very low pitch"
    # pitch std in semitones: 1 % of F0 is 0.17 st (monotone), 25 % is 4.3 st (expressive)
    assert lab(pitch_mean_hz=120.0, pitch_std_hz=1.2)["pitch_std_bin"] == "very monotone"
    assert lab(pitch_mean_hz=120.0, pitch_std_hz=30.0)["pitch_std_bin"] == "quite expressive"
    assert lab()["snr_bin"] is None and lab()["pitch_bin"] is None
    forced = bins.compute_edges(_rows(700), MetadataConfig(bins_method="reference"))
    assert forced["bins"]["snr"]["method"] == "reference"


@needs_espeak
def test_enrich_fills_language_speaking_rate_and_text_emotion_from_asr():
    rows = [
        {"asr_text": "What a wonderful happy day, I love this beautiful gift", "speech_span_s": 3.0,
         "asr_language": "en", "asr_language_prob": 0.97, "asr_model": "faster-whisper:embedded:whisper-base-ct2"},
        {"asr_text": "Hello", "speech_span_s": 1.0, "asr_language": "en", "speaking_rate_pps": 9.0,
         "speaking_rate_source": "reference_text+espeak-ng-1.51:en-us", "emotion": "neutral",
         "language": "de", "language_score": 0.9, "language_source": "speechbrain"},  # already set: kept
        {"asr_text": None, "speech_span_s": 2.0, "asr_language": None},
    ]
    bins.enrich(rows, MetadataConfig(emotion_backend="text-nrc"))
    r = rows[0]
    assert (r["language"], r["language_score"], r["language_source"]) == ("en", 0.97, "faster-whisper:embedded:whisper-base-ct2")
    assert r["n_words"] == 10 and r["speaking_rate_wps"] == pytest.approx(10 / 3)
    assert r["speaking_rate_source"].startswith("asr_text+espeak-ng") and r["speaking_rate_pps"] > r["speaking_rate_wps"]
    assert r["emotion"] == "happy" and r["emotion_source"] == "text-lexicon:nrc-emolex:asr_text"
    assert rows[1]["speaking_rate_pps"] == 9.0 and rows[1]["emotion"] == "neutral" and rows[1]["language"] == "de"
    assert rows[2].get("speaking_rate_pps") is None and rows[2].get("language") is None
    rows2 = [{"asr_text": "I love it", "speech_span_s": 1.0}]
    bins.enrich(rows2, MetadataConfig())  # default: no emotion
    assert rows2[0].get("emotion") is None and rows2[0]["speaking_rate_pps"] is not None


def _utt(i: int, **kw) -> dict:
    return {"id": f"s-{i:04d}", "source_id": "s", "source_path": f"a{i}.wav", "segment_index": i, "start_s": 0.0,
            "end_s": 2.0, "audio": {"bytes": b"x", "path": None}, "sample_rate": 16000, "duration_s": 2.0, **kw}


@needs_espeak
def test_dataset_edges_and_binner_over_a_run(tmp_path):
    """What export does: edges over every ASR shard (no audio read), _bins.json, then each shard binned."""
    rows = _rows(120, seed=3)
    parts = []
    for k in range(3):
        chunk = [_utt(i, **{kk: v for kk, v in r.items() if kk != "id"}, asr_text="the cat sat on the mat",
                      speech_span_s=1.5, asr_language="en", asr_language_prob=0.9, asr_model="fw")
                 for i, r in list(enumerate(rows))[k * 40:(k + 1) * 40]]
        for r in chunk:
            r["speaking_rate_pps"] = None  # filled from asr_text
        p = tmp_path / "_work" / "asr" / store.part_name(k)
        store.write_atomic(schema.conform("utterances", schema.to_table("utterances", chunk)), p)
        parts.append(p)
    run = SimpleNamespace(dir=tmp_path, plan=SimpleNamespace(n_shards=3), profile=SimpleNamespace(metadata=MetadataConfig()),
                          part=lambda stage, k: tmp_path / "_work" / stage / store.part_name(k))
    binner = bins.dataset_binner(run)
    t = binner(schema.conform("utterances", store.read(parts[1])))
    saved = json.loads((tmp_path / "_bins.json").read_text())
    assert saved["rows"] == 120 and saved["bins"]["snr"]["method"] == "quantile"
    assert saved["bins"]["speaking_rate"]["n"] == 120
    out = t.to_pylist()
    assert len(out) == 40 and t.schema == schema.schema("utterances")
    for r in out:
        assert r["snr_bin"] in bins.LABELS["snr"] and r["pitch_bin"] in bins.LABELS["pitch"]
        assert r["language"] == "en" and r["language_source"] == "fw"
        assert r["speaking_rate_pps"] == pytest.approx(len("ðəkætsætɔnðəmæt") / 1.5, rel=0.2)
        assert r["speaking_rate_bin"] in bins.LABELS["speaking_rate"]
        assert r["audio"] == {"bytes": b"x", "path": None}
    # same edges as computing over the three tables at once
    tables = [schema.conform("utterances", store.read(p)) for p in parts]
    _, edges = bins.bin_tables(tables, MetadataConfig())
    assert edges["bins"]["snr"]["edges"] == saved["bins"]["snr"]["edges"]
    assert all(math.isfinite(e) for e in saved["bins"]["pitch"]["groups"]["male"]["edges"])
    assert pq.read_schema(parts[0]).names == schema.columns("utterances")
