"""Dataset-wide text bins for utterance metadata (dataspeech-style descriptions).

Bins need the whole dataset, so they are computed over the final utterance rows (every ASR shard),
not per shard:

1. :func:`enrich` fills what only became known after ASR, where it is still empty:
   ``language`` / ``language_score`` / ``language_source`` from ``asr_language`` /
   ``asr_language_prob`` / ``asr_model``; speaking rate (``n_words``, ``n_phonemes``,
   ``speaking_rate_wps``, ``speaking_rate_pps``) and, with ``emotion_backend: text-nrc``, the text
   emotion from ``asr_text`` (pipeline.backends.metadata.text, same code as for ``reference_text``).
2. :func:`compute_edges` gives 6 inner edges (7 bins) per attribute: the 1/7..6/7 quantiles of its
   values over the dataset when at least ``metadata.bins_min_rows`` values exist (pitch: per
   gender group), else fixed reference edges (listed in REFERENCE_EDGES; conventional values, not
   fitted to anything), or always the reference edges with ``bins_method: reference``.
3. :func:`label_rows` writes ``pitch_bin``, ``pitch_std_bin``, ``speaking_rate_bin``, ``snr_bin``,
   ``c50_bin`` next to the raw values; a row without the raw value gets null.

What each bin is computed from:
``pitch_bin``: log2 of ``pitch_mean_hz`` within the row's gender (male / female / other: rows with
no gender, e.g. an abstained one, or another label use the edges of all rows); ``pitch_std_bin``: ``pitch_std_hz`` in
semitones (12 / ln 2 x std / mean: intonation relative to the speaker's own pitch);
``speaking_rate_bin``: ``speaking_rate_pps`` (phonemes per second); ``snr_bin``: ``snr_db`` (a row with
``snr_capped``, i.e. above the estimator's cap, gets the clearest bin);
``c50_bin``: ``c50_db``.

Wiring: ``pipeline.dataset.export`` calls :func:`dataset_binner` once per export (it reads every ASR shard
without the audio, writes ``<output>/<lang>/_bins.json`` with the edges) and passes each utterances
shard through it. A later stage that needs the labels before export (e.g. the LLM stage for
DeSTA2 seed descriptions) can call :func:`dataset_edges` on the run after ASR and
:func:`label_row` per row.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.core.rows import PITCH_CENTRE_HZ

from pipeline.stages.asr import enrich  # noqa: F401 (step 1 lives with the stage that first runs it)

N_BINS = 7
LABELS = {
    "pitch": ["very low pitch", "quite low pitch", "slightly low pitch", "moderate pitch", "slightly high pitch",
              "quite high pitch", "very high pitch"],
    "pitch_std": ["very monotone", "quite monotone", "slightly monotone", "moderate intonation",
                  "slightly expressive", "quite expressive", "very expressive"],
    "speaking_rate": ["very slowly", "quite slowly", "slightly slowly", "moderate speed", "slightly fast",
                      "quite fast", "very fast"],
    "snr": ["very noisy", "quite noisy", "slightly noisy", "moderate ambient sound", "slightly clear", "quite clear",
            "very clear"],
    "c50": ["very distant-sounding", "quite distant-sounding", "slightly distant-sounding", "moderate reverberation",
            "slightly close-sounding", "quite close-sounding", "very close-sounding"],
}
BIN_COLUMNS = {"pitch": "pitch_bin", "pitch_std": "pitch_std_bin", "speaking_rate": "speaking_rate_bin",
               "snr": "snr_bin", "c50": "c50_bin"}
PITCH_GROUPS = ("male", "female", "other")
_PITCH_CENTRE_HZ = PITCH_CENTRE_HZ
_PITCH_ST = np.array([-6.0, -3.5, -1.5, 1.5, 3.5, 6.0])  # semitones from the group's centre
REFERENCE_EDGES = {
    # pitch: log2(Hz); centre 120 Hz (male) / 210 Hz (female) / 165 Hz (other), +-1.5, 3.5, 6 semitones
    **{f"pitch:{g}": list(np.log2(c) + _PITCH_ST / 12.0) for g, c in _PITCH_CENTRE_HZ.items()},
    "pitch_std": [1.0, 1.5, 2.0, 3.0, 4.0, 5.0],  # semitones
    "speaking_rate": [8.5, 10.0, 11.5, 13.5, 15.0, 17.0],  # phonemes per second (espeak-ng phonemes)
    "snr": [5.0, 12.0, 20.0, 28.0, 36.0, 45.0],  # dB
    "c50": [5.0, 15.0, 25.0, 35.0, 45.0, 55.0],  # dB
}
LANGUAGE_KEYS = ("language", "language_score", "language_source")


# --------------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------------
def _f(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def pitch_group(gender: str | None) -> str:
    return gender if gender in ("male", "female") else "other"


def value(kind: str, row: dict) -> float | None:
    """The number a bin of ``kind`` is computed from (None: no bin for this row)."""
    if kind == "pitch":
        hz = _f(row.get("pitch_mean_hz"))
        return math.log2(hz) if hz and hz > 0 else None
    if kind == "pitch_std":
        hz, sd = _f(row.get("pitch_mean_hz")), _f(row.get("pitch_std_hz"))
        return 12.0 / math.log(2.0) * sd / hz if hz and hz > 0 and sd is not None else None
    if kind == "speaking_rate":
        return _f(row.get("speaking_rate_pps"))
    if kind == "snr":
        return _f(row.get("snr_db"))
    if kind == "c50":
        return _f(row.get("c50_db"))
    raise ValueError(kind)


# --------------------------------------------------------------------------------------------------
# 1. fill what ASR made known
# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# 2. edges
# --------------------------------------------------------------------------------------------------
def _edges_for(values: list[float], ref_key: str, method: str, min_rows: int) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if method == "quantile" and v.size >= max(min_rows, N_BINS):
        edges = np.quantile(v, np.arange(1, N_BINS) / N_BINS)
        return {"method": "quantile", "n": int(v.size), "edges": [float(e) for e in edges]}
    return {"method": "reference", "n": int(v.size), "edges": [float(e) for e in REFERENCE_EDGES[ref_key]]}


def compute_edges(rows: list[dict], cfg=None) -> dict:
    """Edges per attribute (pitch per gender group) over ``rows`` (already :func:`enrich`-ed)."""
    from pipeline.core.config import MetadataConfig

    cfg = cfg or MetadataConfig()
    method, min_rows = cfg.bins_method, cfg.bins_min_rows
    out: dict = {"n_bins": N_BINS, "labels": LABELS, "bins": {}}
    pitch_all = [value("pitch", r) for r in rows]
    groups = {}
    for g in PITCH_GROUPS:
        vals = [value("pitch", r) for r in rows if pitch_group(r.get("gender")) == g]
        if g == "other":  # no gender: edges of all rows (quantile) or the neutral reference
            vals = pitch_all
        groups[g] = _edges_for(vals, f"pitch:{g}", method, min_rows)
    out["bins"]["pitch"] = {"value": "log2(pitch_mean_hz)", "by": "gender", "groups": groups}
    desc = {"pitch_std": "semitones: 12/ln2 * pitch_std_hz / pitch_mean_hz", "speaking_rate": "speaking_rate_pps",
            "snr": "snr_db", "c50": "c50_db"}
    for kind, what in desc.items():
        out["bins"][kind] = {"value": what, **_edges_for([value(kind, r) for r in rows], kind, method, min_rows)}
    return out


# --------------------------------------------------------------------------------------------------
# 3. labels
# --------------------------------------------------------------------------------------------------
def _label(kind: str, v: float | None, edges: list[float]) -> str | None:
    if v is None:
        return None
    return LABELS[kind][int(np.searchsorted(np.asarray(edges), v, side="right"))]


def label_row(row: dict, edges: dict) -> dict:
    """{pitch_bin, pitch_std_bin, speaking_rate_bin, snr_bin, c50_bin} for one row."""
    b = edges["bins"]
    out = {}
    for kind, col in BIN_COLUMNS.items():
        e = b[kind]["groups"][pitch_group(row.get("gender"))]["edges"] if kind == "pitch" else b[kind]["edges"]
        out[col] = _label(kind, value(kind, row), e)
    if row.get("snr_capped") and out["snr_bin"] is not None:  # at the estimator's cap: the clearest bin
        out["snr_bin"] = LABELS["snr"][-1]
    return out


def label_rows(rows: list[dict], edges: dict) -> list[dict]:
    for r in rows:
        r.update(label_row(r, edges))
    return rows


# --------------------------------------------------------------------------------------------------
# tables and runs
# --------------------------------------------------------------------------------------------------
_FILLED = ("n_words", "n_phonemes", "speaking_rate_wps", "speaking_rate_pps", "speaking_rate_source",
           "emotion", "emotion_score", "emotion_source", *LANGUAGE_KEYS, *BIN_COLUMNS.values())


def _rows(table: pa.Table) -> list[dict]:
    return table.select([c for c in table.column_names if c != "audio"]).to_pylist()


def apply_bins(table: pa.Table, edges: dict, cfg=None) -> pa.Table:
    """``table`` (utterances schema) with the ASR-derived columns filled and the bin columns set."""
    rows = label_rows(enrich(_rows(table), cfg), edges)
    for col in _FILLED:
        if col not in table.column_names:
            continue
        i = table.column_names.index(col)
        f = table.schema.field(i)
        table = table.set_column(i, f, pa.array([r.get(col) for r in rows], type=f.type))
    return table


def bin_tables(tables: list[pa.Table], cfg=None) -> tuple[list[pa.Table], dict]:
    """Bins over several utterances tables together (the whole dataset): (tables, edges)."""
    rows = []
    for t in tables:
        rows += enrich(_rows(t), cfg)
    edges = compute_edges(rows, cfg)
    return [apply_bins(t, edges, cfg) for t in tables], edges


def dataset_edges(run, write: bool = True) -> dict:
    """Edges over every ASR shard of ``run`` (audio column not read); writes ``<run.dir>/_bins.json``."""
    import pyarrow.parquet as pq

    cfg = run.profile.metadata
    rows: list[dict] = []
    for k in range(run.plan.n_shards):
        p = run.part("asr", k)
        if p.exists():
            names = [n for n in pq.read_schema(p).names if n != "audio"]
            rows += enrich(pq.read_table(p, columns=names).to_pylist(), cfg)
    edges = compute_edges(rows, cfg)
    edges["rows"] = len(rows)
    if write:
        path = Path(run.dir) / "_bins.json"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(edges, indent=1))
        tmp.replace(path)
    return edges


def dataset_binner(run):
    """A function table -> table for export; the dataset-wide edges are computed on first use."""
    cache: dict = {}

    def binner(table: pa.Table) -> pa.Table:
        if "edges" not in cache:
            cache["edges"] = dataset_edges(run)
        return apply_bins(table, cache["edges"], run.profile.metadata)

    return binner
