"""One self-contained HTML report of a run's output directory.

``write_report(dataset_dir)`` reads ``<dataset_dir>/{utterances,instructions,rejects}/*.parquet`` and
``_manifest.json`` and writes ``report.html``: header (row counts, audio hours, manifest), plots
(base64 PNG, matplotlib Agg), sample rows with embedded audio players (data: URIs) and a rejects table.
No external URL is referenced, so the file can be mailed or opened offline.

Plots are not a fixed list: every numeric column and every string column with at most
``MAX_CATEGORIES`` distinct values that the tables hold is plotted (new columns such as emotion or
judge scores appear by themselves); known columns only get nicer titles and units. Ids, paths, free
text and ``*_json`` columns are not plotted.

Memory: the plots read only scalar columns (``columns=``); audio bytes are read only for the sampled
rows, one Parquet row group at a time. All text is HTML-escaped (Jinja2 autoescape): transcripts and
model outputs are untrusted data.

CLI: ``python -m pipeline.report DATASET_DIR [-o OUT] [--title T] [--max-samples N]``.
"""
from __future__ import annotations

import argparse
import base64
import bisect
import io
import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import ROOT

TEMPLATE = ROOT / "prompts" / "report.html.j2"
TABLES = ("utterances", "instructions", "rejects")
MANIFEST = "_manifest.json"
MAX_CATEGORIES = 30  # string / small-integer columns with at most this many distinct values get a bar chart
REJECTS_SHOWN = 50
MAX_AUDIO_BYTES = 8 << 20  # larger clips are not embedded (the report would get huge)
MAX_CELL_CHARS = 2000  # longer text values are cut in sample cards / tables
_TAKE_BATCH = 64  # rows decoded at a time when fetching sampled rows (bounds memory held by audio bytes)

#: column -> (title, unit). Only cosmetic: unknown columns are plotted too.
KNOWN_COLUMNS: dict[str, tuple[str, str]] = {
    "duration_s": ("Duration", "s"),
    "sample_rate": ("Sample rate", "Hz"),
    "speech_ratio": ("Speech ratio (VAD)", ""),
    "speaker": ("Speaker", ""),
    "loudness_lufs": ("Integrated loudness", "LUFS"),
    "snr_db": ("Estimated SNR", "dB"),
    "snr_source": ("SNR estimator", ""),
    "pitch_mean_hz": ("Mean pitch (F0)", "Hz"),
    "pitch_std_hz": ("Pitch std (F0)", "Hz"),
    "pitch_source": ("Pitch estimator", ""),
    "gender": ("Predicted gender", ""),
    "gender_score": ("Gender probability", ""),
    "gender_source": ("Gender model", ""),
    "asr_language": ("ASR language", ""),
    "asr_language_prob": ("ASR language probability", ""),
    "asr_avg_logprob": ("ASR mean token log-prob", ""),
    "asr_no_speech_prob": ("ASR no-speech probability", ""),
    "asr_compression_ratio": ("ASR compression ratio", ""),
    "asr_model": ("ASR model", ""),
    "wer": ("WER (ASR vs reference)", ""),
    "emotion": ("Emotion", ""),
    "task": ("Instructions per task", ""),
    "dataset": ("Source dataset", ""),
    "text_source": ("Grounding text source", ""),
    "engine": ("Generation engine", ""),
    "model_id": ("Generation model", ""),
    "prompt_template": ("Prompt template", ""),
    "voice": ("TTS voice", ""),
    "stage": ("Reject stage", ""),
    "reason": ("Reject reason", ""),
}
#: categorical even though the name looks like an id (``model_id``) - always considered for a bar chart.
CATEGORICAL_COLUMNS = {k for k, (_, unit) in KNOWN_COLUMNS.items() if not unit} - {
    "speech_ratio", "gender_score", "asr_language_prob", "asr_avg_logprob", "asr_no_speech_prob",
    "asr_compression_ratio", "wer"}
#: never plotted by the generic pass: positions, seeds, ids, paths, hashes, free text, JSON blobs.
NOT_PLOTTED = {"segment_index", "start_s", "end_s", "seed", "source_path", "reference_text", "asr_text",
               "prompt", "response", "seed_description", "detail", "raw", "messages", "audio"}
_NOT_PLOTTED_RE = re.compile(r"(^id$|_id$|^id_|_ids$|_json$|_path$|_hash$|_text$|_url$)")
_FREE_TEXT_CHARS = 48  # a string column whose mean value is longer than this is text, not a category

_PALETTE = ["#3b6ea5", "#e07b39", "#4c9a5f", "#b5485d", "#7d5ba6", "#8c7b3f", "#3a9ca6", "#c1609a",
            "#6d7f8c", "#a0a83a"]


# ----------------------------------------------------------------------------------------- reading

@dataclass
class _Table:
    name: str
    files: list[Path] = field(default_factory=list)
    rows_per_file: list[int] = field(default_factory=list)
    names_per_file: list[list[str]] = field(default_factory=list)
    schema: pa.Schema | None = None
    bytes_on_disk: int = 0
    present: bool = False

    @property
    def rows(self) -> int:
        return sum(self.rows_per_file)

    def has(self, col: str) -> bool:
        return self.schema is not None and col in self.schema.names

    def scalar_columns(self) -> list[str]:
        if self.schema is None:
            return []
        return [f.name for f in self.schema if _is_scalar(f.type)]


def _is_scalar(t: pa.DataType) -> bool:
    return (pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t)
            or (pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type))))


def _open_table(dataset_dir: Path, name: str, warnings: list[str]) -> _Table:
    t = _Table(name)
    d = dataset_dir / name
    if not d.is_dir():
        return t
    t.present = True
    schemas = []
    for f in sorted(d.glob("*.parquet")):
        if f.name.startswith("."):  # writers' temp files
            continue
        try:
            meta = pq.read_metadata(f)
            sch = meta.schema.to_arrow_schema()
        except Exception as e:  # a truncated / foreign file must not kill the report
            warnings.append(f"{name}/{f.name}: unreadable Parquet file ({type(e).__name__}: {e})")
            continue
        t.files.append(f)
        t.rows_per_file.append(meta.num_rows)
        t.names_per_file.append(sch.names)
        t.bytes_on_disk += f.stat().st_size
        schemas.append(sch)
    if schemas:
        try:
            t.schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            warnings.append(f"{name}: part files have incompatible schemas ({e}); using the first one")
            t.schema = schemas[0]
    return t


def _read_columns(t: _Table, cols: list[str]) -> pa.Table:
    """Only ``cols`` (those present in the unified schema), concatenated over all part files."""
    cols = [c for c in cols if t.has(c)]
    fields = [t.schema.field(c) for c in cols]
    parts = []
    for f, n, names in zip(t.files, t.rows_per_file, t.names_per_file):
        got = pq.read_table(f, columns=[c for c in cols if c in names])
        arrays = []
        for fl in fields:
            if fl.name in got.column_names:
                col = got.column(fl.name)
                try:
                    col = col.cast(fl.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    col = pa.nulls(n, fl.type)
                arrays.append(col)
            else:
                arrays.append(pa.nulls(n, fl.type))
        parts.append(pa.Table.from_arrays(arrays, schema=pa.schema(fields)))
    if not parts:
        return pa.table({fl.name: pa.array([], fl.type) for fl in fields})
    return pa.concat_tables(parts)


def _take_rows(t: _Table, indices: list[int], cols: list[str]) -> list[dict]:
    """Rows at global ``indices`` (over the sorted part files), reading only the row groups they are in."""
    offsets = np.cumsum([0, *t.rows_per_file]).tolist()
    wanted: dict[int, list[int]] = defaultdict(list)
    for gi in indices:
        wanted[bisect.bisect_right(offsets, gi) - 1].append(gi)
    found: dict[int, dict] = {}
    for fi, gis in wanted.items():
        pf = pq.ParquetFile(t.files[fi])
        present = [c for c in cols if c in t.names_per_file[fi]]
        rg_off = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]).tolist()
        by_rg: dict[int, list[int]] = defaultdict(list)
        for gi in sorted(set(gis)):
            by_rg[bisect.bisect_right(rg_off, gi - offsets[fi]) - 1].append(gi)
        for rg, rg_gis in by_rg.items():
            # Stream the row group in small batches: a row group can hold GBs of audio.
            pos, todo = 0, [(gi - offsets[fi] - rg_off[rg], gi) for gi in rg_gis]
            for batch in pf.iter_batches(batch_size=_TAKE_BATCH, row_groups=[rg], columns=present):
                here = [(local - pos, gi) for local, gi in todo if pos <= local < pos + batch.num_rows]
                if here:
                    rows = batch.take([i for i, _ in here]).to_pylist()
                    for (_, gi), row in zip(here, rows):
                        found[gi] = {c: row.get(c) for c in cols}
                pos += batch.num_rows
                if pos > todo[-1][0]:
                    break
    return [found[gi] for gi in indices if gi in found]


# ------------------------------------------------------------------------------------------- plots

def _figure(width: float = 4.6, height: float = 2.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg backend; no pyplot global state
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="both", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    return fig, ax


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, facecolor="white", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _title_unit(col: str) -> tuple[str, str]:
    if col in KNOWN_COLUMNS:
        return KNOWN_COLUMNS[col]
    for suffix, unit in (("_s", "s"), ("_ms", "ms"), ("_db", "dB"), ("_hz", "Hz"), ("_lufs", "LUFS"), ("_pct", "%")):
        if col.endswith(suffix):
            return col[: -len(suffix)].replace("_", " ").capitalize(), unit
    return col.replace("_", " ").capitalize(), ""


def _axis_label(title: str, unit: str) -> str:
    return f"{title} ({unit})" if unit else title


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}" if abs(v) >= 1e5 else str(v)
    return str(v)


def _doc(t: _Table, col: str) -> str:
    try:
        md = t.schema.field(col).metadata or {}
    except KeyError:
        return ""
    return md.get(b"doc", b"").decode("utf-8", "replace")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def _plot(pid: str, title: str, png: str, caption: str = "", doc: str = "", wide: bool = False) -> dict:
    if doc and doc.strip().lower() in {title.lower(), *(f"{title} ({u})".lower() for u in ("s", "hz", "db"))}:
        doc = ""  # the schema doc only repeats the title
    return {"id": pid, "title": title, "png": png, "caption": caption, "doc": doc, "wide": wide}


def _hist_plot(pid: str, values: np.ndarray, nulls: int, title: str, unit: str, color: str, doc: str = "") -> dict | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    fig, ax = _figure()
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        bins = 1
        rng = (lo - 0.5, hi + 0.5) if lo == 0 else (lo - abs(lo) * 0.05, hi + abs(hi) * 0.05)
    else:
        rng = (lo, hi)
        bins = int(np.clip(len(np.histogram_bin_edges(v, bins="auto")) - 1, 5, 60))
    ax.hist(v, bins=bins, range=rng, color=color, edgecolor="white", linewidth=0.5)
    med = float(np.median(v))
    ax.axvline(med, color="#333333", linestyle="--", linewidth=1)
    ax.set_xlabel(_axis_label(title, unit))
    ax.set_ylabel("rows")
    u = f" {unit}" if unit else ""
    caption = (f"n={v.size:,} · mean {_fmt(float(v.mean()))}{u} · median (dashed) {_fmt(med)}{u} · "
               f"range {_fmt(lo)} to {_fmt(hi)}{u}")
    if nulls:
        caption += f" · {nulls:,} null"
    if values.size - nulls - v.size:
        caption += f" · {values.size - nulls - v.size:,} non-finite"
    return _plot(pid, title, _png(fig), caption, doc)


def _bar_plot(pid: str, labels: list[str], counts: list[int], title: str, color: str | list[str],
              doc: str = "", caption: str = "", xlabel: str = "rows", legend: dict | None = None) -> dict:
    n = len(labels)
    fig, ax = _figure(4.6, max(1.5, 0.75 + 0.26 * n))
    shown = [lb if len(lb) <= 42 else lb[:40] + "…" for lb in labels]
    y = np.arange(n)
    ax.barh(y, counts, color=color, height=0.7)
    ax.set_yticks(y, shown, fontsize=8 if n > 12 else 9)
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(xlabel)
    top = max(counts) if counts else 1
    ax.set_xlim(0, top * 1.15 + 0.5)
    for yi, c in zip(y, counts):
        ax.text(c + top * 0.015, yi, f"{c:,}", va="center", fontsize=8, color="#333333")
    if legend:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=c, label=k) for k, c in legend.items()], frameon=False, fontsize=8,
                  loc="lower right")
    total = sum(counts)
    cap = caption or f"{n} distinct value{'s' if n != 1 else ''} · {total:,} rows"
    return _plot(pid, title, _png(fig), cap, doc)


def _value_counts(col: pa.ChunkedArray) -> tuple[list[str], list[int], int]:
    """(values, counts) sorted by count desc (null excluded), and the null count."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    vc = pc.value_counts(col.drop_null())
    vals = [str(v) for v in vc.field("values").to_pylist()]
    counts = vc.field("counts").to_pylist()
    order = sorted(range(len(vals)), key=lambda i: (-counts[i], vals[i]))
    return [vals[i] for i in order], [counts[i] for i in order], col.null_count


def _numeric(col: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _plot_candidate(name: str) -> bool:
    return name not in NOT_PLOTTED and (name in CATEGORICAL_COLUMNS or not _NOT_PLOTTED_RE.search(name))


def _generic_plots(t: _Table, data: pa.Table, exclude: set[str], color_offset: int = 0) -> tuple[list[dict], list[str]]:
    """A histogram per numeric column, a bar chart per low-cardinality categorical column.

    Returns (plots, notes) where notes are (why, column) for candidate columns that were not plotted.
    """
    plots, notes = [], []
    k = color_offset
    for name in data.column_names:
        if name in exclude or not _plot_candidate(name):
            continue
        col = data.column(name)
        typ = col.type
        title, unit = _title_unit(name)
        color = _PALETTE[k % len(_PALETTE)]
        if len(col) == col.null_count:
            notes.append(("all null", name))
            continue
        is_int = pa.types.is_integer(typ)
        if pa.types.is_floating(typ) or (is_int and pc.count_distinct(col).as_py() > MAX_CATEGORIES):
            p = _hist_plot(f"{t.name}.{name}", _numeric(col), col.null_count, title, unit, color, _doc(t, name))
            if p is None:
                notes.append(("no finite values", name))
                continue
            plots.append(p)
        else:
            vals, counts, nulls = _value_counts(col)
            if len(vals) > MAX_CATEGORIES:
                notes.append((f"more than {MAX_CATEGORIES} distinct values", f"{name} ({len(vals):,})"))
                continue
            if not is_int and not pa.types.is_boolean(typ) and name not in CATEGORICAL_COLUMNS:
                mean_len = sum(len(v) * c for v, c in zip(vals, counts)) / max(1, sum(counts))
                if mean_len > _FREE_TEXT_CHARS:
                    notes.append(("free text", name))
                    continue
            if is_int:  # small integer codes: keep numeric order
                order = sorted(range(len(vals)), key=lambda i: float(vals[i]))
                vals, counts = [vals[i] for i in order], [counts[i] for i in order]
            if unit:
                vals = [f"{v} {unit}" for v in vals]
            colors: str | list[str] = color
            if nulls:
                vals, counts = vals + ["(null)"], counts + [nulls]
                colors = [color] * (len(vals) - 1) + ["#b0b0b0"]
            plots.append(_bar_plot(f"{t.name}.{name}", vals, counts, title, colors, _doc(t, name)))
        k += 1
    return plots, notes


# ------------------------------------------------------------------------------------------- audio

def audio_mime(data: bytes | None) -> str | None:
    """MIME type of encoded audio from its magic bytes: FLAC, WAV, OGG or MP3; None if unknown."""
    if not data or len(data) < 4:
        return None
    head = bytes(data[:12])
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:3] == b"ID3" or (head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0):
        return "audio/mpeg"
    return None


def _audio(value) -> dict:
    """Template view of an audio struct {bytes, path}: a data: URI, or a note why there is no player."""
    if not isinstance(value, dict):
        return {"src": None, "note": "no audio"}
    data, path = value.get("bytes"), value.get("path")
    if not data:
        return {"src": None, "note": f"no embedded audio bytes{f' (path: {path})' if path else ''}"}
    mime = audio_mime(data)
    size = f"{len(data) / 1024:,.0f} KiB"
    if mime is None:
        return {"src": None, "note": f"unrecognised audio format ({size}, starts with {bytes(data[:4])!r})"}
    if len(data) > MAX_AUDIO_BYTES:
        return {"src": None, "note": f"{mime} clip of {size} not embedded (limit {MAX_AUDIO_BYTES >> 20} MiB)"}
    return {"src": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", "mime": mime, "size": size,
            "note": None}


# ----------------------------------------------------------------------------------------- helpers

def _cut(v) -> str | None:
    if v is None:
        return None
    s = str(v)
    return s if len(s) <= MAX_CELL_CHARS else s[:MAX_CELL_CHARS] + f"… [{len(s) - MAX_CELL_CHARS:,} more chars]"


def _pick(groups: dict[str, np.ndarray], k: int, seed: int = 0) -> list[int]:
    """Up to k indices, round-robin over the groups (sorted by name), random but reproducible within each."""
    rng = np.random.default_rng(seed)
    queues = {g: [int(i) for i in rng.choice(ix, size=min(k, len(ix)), replace=False)]
              for g, ix in sorted(groups.items()) if len(ix)}
    out: list[int] = []
    while len(out) < k and any(queues.values()):
        for q in queues.values():
            if q and len(out) < k:
                out.append(int(q.pop(0)))
    return out


def _flatten(obj, prefix: str = "") -> list[tuple[str, str, str | None]]:
    """Manifest -> (dotted key, short value, full value or None) rows; nested objects become dotted keys."""
    rows: list[tuple[str, str, str | None]] = []
    if isinstance(obj, dict) and obj:
        for key, val in obj.items():
            name = f"{prefix}{key}"
            if isinstance(val, dict) and val and prefix.count(".") < 3:
                rows.extend(_flatten(val, name + "."))
            else:
                rows.append((name, *_manifest_value(val)))
    else:
        rows.append((prefix.rstrip(".") or "manifest", *_manifest_value(obj)))
    return rows


def _manifest_value(v) -> tuple[str, str | None]:
    """(short, full): long values and lists of objects (e.g. file lists) are folded behind a summary."""
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        full = json.dumps(v, ensure_ascii=False, indent=1, default=str)
        return f"{len(v)} entr{'y' if len(v) == 1 else 'ies'}", _cut_chars(full, 20000)
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    if len(s) <= 200:
        return s, None
    return s[:160] + "…", _cut_chars(s, 20000)


def _cut_chars(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n] + f"… [{len(s) - n:,} more chars]"


def _read_manifest(dataset_dir: Path, warnings: list[str]) -> list[tuple[str, str, str | None]] | None:
    p = dataset_dir / MANIFEST
    if not p.is_file():
        return None
    try:
        return _flatten(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        warnings.append(f"{MANIFEST}: cannot be read ({e})")
        return None


# -------------------------------------------------------------------------------------- sections

def _utterance_section(t: _Table, max_samples: int) -> tuple[dict, list[dict], float | None]:
    section = {"id": "utterances", "title": "Utterances", "plots": [], "notes": [], "message": None}
    if not t.rows:
        return section, [], None
    cols = [c for c in t.scalar_columns() if _plot_candidate(c) or c in ("start_s", "end_s")]
    data = _read_columns(t, cols)
    hours = None
    if "duration_s" in data.column_names:
        dur = _numeric(data.column("duration_s"))
    elif "start_s" in data.column_names and "end_s" in data.column_names:
        dur = _numeric(data.column("end_s")) - _numeric(data.column("start_s"))
    else:
        dur = None
    if dur is not None:
        hours = float(np.nansum(dur)) / 3600
        nulls = int(np.isnan(dur).sum())
        p = _hist_plot("utterances.duration_s", dur, nulls, "Duration", "s", _PALETTE[0], _doc(t, "duration_s"))
        if p:
            p["caption"] += f" · total {hours:,.2f} h" if hours >= 0.1 else f" · total {hours * 60:,.2g} min"
            section["plots"].append(p)
    if "wer" in data.column_names:
        wer = data.column("wer")
        if wer.null_count < len(wer):
            p = _hist_plot("utterances.wer", _numeric(wer), wer.null_count, "WER (ASR vs reference)", "",
                           _PALETTE[3], _doc(t, "wer"))
            if p:
                section["plots"].append(p)
        else:
            section["notes"].append(("all null", "wer (no reference transcripts)"))
    plots, notes = _generic_plots(t, data, {"duration_s", "wer"}, color_offset=1)
    section["plots"] += plots
    section["notes"] += notes

    samples = []
    if max_samples > 0:
        idx = _pick({"all": np.arange(t.rows)}, max_samples)
        want = [c for c in t.schema.names if c == "audio" or _is_scalar(t.schema.field(c).type)]
        for row in _take_rows(t, idx, want):
            meta = [(k, _cut(_fmt(v))) for k, v in row.items()
                    if v is not None and k not in ("id", "audio", "asr_text", "reference_text", "asr_segments_json",
                                                   "duration_s", "wer")]
            samples.append({"id": row.get("id"), "audio": _audio(row.get("audio")), "asr_text": _cut(row.get("asr_text")),
                            "reference_text": _cut(row.get("reference_text")), "wer": _fmt(row.get("wer")),
                            "duration": _fmt(row.get("duration_s")), "meta": meta})
    return section, samples, hours


_INSTRUCTION_MAIN = ("id", "task", "audio", "prompt", "response", "seed_description", "messages")


def _instruction_section(t: _Table, max_samples: int) -> tuple[dict, list[dict]]:
    section = {"id": "instructions", "title": "Instructions", "plots": [], "notes": [], "message": None}
    if not t.rows:
        return section, []
    cols = [c for c in t.scalar_columns() if _plot_candidate(c) or c == "response"]
    data = _read_columns(t, cols)
    tasks = (data.column("task").cast(pa.string()) if "task" in data.column_names
             else pa.chunked_array([pa.nulls(len(data), pa.string())]))
    tasks = pc.fill_null(tasks, "(none)")
    vals, counts, _ = _value_counts(tasks)
    enc = pc.dictionary_encode(tasks.combine_chunks())
    task_names = [str(v) for v in enc.dictionary.to_pylist()]
    codes = enc.indices.to_numpy(zero_copy_only=False)
    rows_of = {name: np.flatnonzero(codes == i) for i, name in enumerate(task_names)}
    color_of = {v: _PALETTE[i % len(_PALETTE)] for i, v in enumerate(sorted(vals))}
    if "task" in data.column_names:
        section["plots"].append(_bar_plot("instructions.task", vals, counts, "Instructions per task",
                                          [color_of[v] for v in vals], _doc(t, "task")))
    if "response" in data.column_names:
        words = pc.list_value_length(pc.utf8_split_whitespace(data.column("response").cast(pa.string())))
        wn = _numeric(words)
        groups = [(v, wn[rows_of[v]]) for v in sorted(vals)]
        groups = [(v, w[np.isfinite(w)]) for v, w in groups]
        groups = [(v, w) for v, w in groups if w.size]
        if groups:
            fig, ax = _figure(4.6, max(1.6, 0.9 + 0.42 * len(groups)))
            kw = dict(patch_artist=True, widths=0.6, medianprops={"color": "#222222"},
                      flierprops={"markersize": 3, "alpha": 0.5})
            try:  # matplotlib >= 3.10
                bp = ax.boxplot([w for _, w in groups], orientation="horizontal", **kw)
            except TypeError:
                bp = ax.boxplot([w for _, w in groups], vert=False, **kw)
            for patch, (v, _) in zip(bp["boxes"], groups):
                patch.set_facecolor(color_of[v])
                patch.set_alpha(0.8)
            ax.set_yticks(range(1, len(groups) + 1), [v if len(v) <= 30 else v[:28] + "…" for v, _ in groups])
            ax.invert_yaxis()
            ax.set_xlabel("response length (words)")
            ax.grid(axis="y", visible=False)
            cap = " · ".join(f"{v}: median {_fmt(float(np.median(w)))} (n={w.size:,})" for v, w in groups)
            section["plots"].append(_plot("instructions.response_words", "Response length per task", _png(fig), cap))
    plots, notes = _generic_plots(t, data, {"task", "response"}, color_offset=2)
    section["plots"] += plots
    section["notes"] += notes

    samples = []
    if max_samples > 0:
        idx = _pick(rows_of, max_samples)
        want = [c for c in t.schema.names
                if (c in _INSTRUCTION_MAIN and c != "messages") or (_is_scalar(t.schema.field(c).type) and not c.endswith("_json"))]
        for row in _take_rows(t, idx, want):
            meta = [(k, _cut(_fmt(v))) for k, v in row.items() if v is not None and k not in _INSTRUCTION_MAIN]
            samples.append({"id": row.get("id"), "task": row.get("task"), "audio": _audio(row.get("audio")),
                            "prompt": _cut(row.get("prompt")), "response": _cut(row.get("response")),
                            "seed_description": _cut(row.get("seed_description")), "meta": meta,
                            "color": color_of.get(row.get("task") or "(none)", _PALETTE[0])})
        samples.sort(key=lambda s: (str(s["task"]), str(s["id"])))
    return section, samples


_REJECT_COLUMNS = ("id", "stage", "reason", "detail", "source_path")


def _reject_section(t: _Table) -> tuple[dict, dict | None]:
    section = {"id": "rejects", "title": "Rejects", "plots": [], "notes": [], "message": None}
    reasons: list[tuple[str, str, str, int]] = []  # (stage, reason, "stage:reason", count)
    if not t.present:
        section["message"] = "No rejects table in this run."
        return section, None
    if not t.rows:
        return section, {"columns": list(_REJECT_COLUMNS), "rows": [], "total": 0, "reasons": reasons}
    cols = [c for c in t.scalar_columns() if _plot_candidate(c) or c in _REJECT_COLUMNS]
    data = _read_columns(t, cols)
    stage = pc.fill_null(data.column("stage").cast(pa.string()), "?") if "stage" in data.column_names else None
    reason = pc.fill_null(data.column("reason").cast(pa.string()), "?") if "reason" in data.column_names else None
    if stage is not None or reason is not None:
        n = len(data)
        unknown = pa.chunked_array([pa.array(["?"] * n, pa.string())])
        grouped = pa.table({"s": stage if stage is not None else unknown,
                            "r": reason if reason is not None else unknown}).group_by(["s", "r"]).aggregate([([], "count_all")])
        counts: dict[tuple[str, str], int] = {
            (s, r): c for s, r, c in zip(*(grouped.column(x).to_pylist() for x in ("s", "r", "count_all")))}
        stage_total: dict[str, int] = defaultdict(int)
        for (s, _), c in counts.items():
            stage_total[s] += c
        keys = sorted(counts, key=lambda k: (-stage_total[k[0]], k[0], -counts[k], k[1]))
        stage_color = {s: _PALETTE[i % len(_PALETTE)] for i, s in enumerate(sorted(stage_total, key=lambda s: -stage_total[s]))}
        reasons = [(s, r, f"{s}:{r}", counts[(s, r)]) for s, r in keys]
        cap = " · ".join(f"{s}: {c:,}" for s, c in sorted(stage_total.items(), key=lambda x: -x[1]))
        section["plots"].append(_bar_plot(
            "rejects.stage_reason", [f"{s}:{r}" for s, r in keys], [counts[k] for k in keys],
            "Reject reasons by stage", [stage_color[s] for s, _ in keys],
            caption=f"{n:,} reject{'s' if n != 1 else ''} · {cap}", legend=stage_color if len(stage_color) > 1 else None))
    plots, notes = _generic_plots(t, data, {"stage", "reason"}, color_offset=4)
    section["plots"] += plots
    section["notes"] += notes
    head = data.slice(0, REJECTS_SHOWN)
    shown = [c for c in _REJECT_COLUMNS if c in head.column_names]
    rows = [[_cut(r.get(c)) for c in shown] for r in head.select(shown).to_pylist()]
    return section, {"columns": shown, "rows": rows, "total": len(data), "reasons": reasons}


# ---------------------------------------------------------------------------------------- public

def _group_notes(section: dict) -> dict:
    """[(why, column), ...] -> {why: [columns]} in first-seen order, for one line per reason."""
    grouped: dict[str, list[str]] = {}
    for why, col in section.pop("notes"):
        grouped.setdefault(why, []).append(col)
    section["skipped"] = grouped
    return section


def _render(**ctx) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE.name).render(**ctx)


def write_report(dataset_dir: Path, out: Path | None = None, *, title: str | None = None,
                 max_samples: int = 12) -> Path:
    """Write one self-contained HTML report of a run's output directory; returns its path.

    ``out`` defaults to ``dataset_dir / "report.html"``. ``max_samples`` bounds both the instruction
    and the utterance sample cards (instructions are mixed round-robin over tasks).
    """
    import matplotlib

    dataset_dir = Path(dataset_dir)
    out = Path(out) if out is not None else dataset_dir / "report.html"
    warnings: list[str] = []
    if not dataset_dir.is_dir():
        warnings.append(f"{dataset_dir} is not a directory")
    tables = {name: _open_table(dataset_dir, name, warnings) for name in TABLES}
    manifest = _read_manifest(dataset_dir, warnings)

    style = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 8,
             "ytick.labelsize": 8.5, "axes.edgecolor": "#888888", "font.family": "DejaVu Sans"}
    with matplotlib.rc_context(style):
        utt_section, utt_samples, hours = _utterance_section(tables["utterances"], max_samples)
        ins_section, ins_samples = _instruction_section(tables["instructions"], max_samples)
        rej_section, rejects = _reject_section(tables["rejects"])

    counts = [{"name": t.name, "present": t.present, "files": len(t.files), "rows": t.rows,
               "size": _size(t.bytes_on_disk) if t.present else ""} for t in tables.values()]
    html = _render(
        title=title or f"speechinstruct report: {dataset_dir.resolve().name}",
        dataset_dir=str(dataset_dir.resolve()),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        tables=counts,
        hours=(f"{hours:,.2f}" if hours >= 0.1 else f"{hours:.2g}") if hours is not None else None,
        manifest=manifest,
        warnings=warnings,
        sections=[_group_notes(s) for s in (utt_section, ins_section, rej_section)],
        rejects=rejects,
        rejects_shown=REJECTS_SHOWN,
        instruction_samples=ins_samples,
        utterance_samples=utt_samples,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])
    ap.add_argument("dataset_dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=None)
    ap.add_argument("--title", default=None)
    ap.add_argument("--max-samples", type=int, default=12)
    a = ap.parse_args(argv)
    print(write_report(a.dataset_dir, a.out, title=a.title, max_samples=a.max_samples))


if __name__ == "__main__":
    main()
