"""The report's figures (base64 PNG, matplotlib Agg): histograms, bar charts, and the generic pass that plots
every numeric or low-cardinality column a table holds."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset.report.cells import _fmt
from pipeline.dataset.report.tables import _doc, _Table

MAX_CATEGORIES = 30  # string / small-integer columns with at most this many distinct values get a bar chart

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
