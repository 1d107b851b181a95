"""The report's sections: utterances and instructions (plots + sample cards) and rejects (plots + table)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset.report.cells import _audio, _cut, _fmt
from pipeline.dataset.report.plots import (
    _PALETTE,
    _bar_plot,
    _figure,
    _generic_plots,
    _hist_plot,
    _numeric,
    _plot,
    _plot_candidate,
    _png,
    _value_counts,
)
from pipeline.dataset.report.tables import _doc, _is_scalar, _read_columns, _Table, _take_rows

REJECTS_SHOWN = 50


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


def _group_notes(section: dict) -> dict:
    """[(why, column), ...] -> {why: [columns]} in first-seen order, for one line per reason."""
    grouped: dict[str, list[str]] = {}
    for why, col in section.pop("notes"):
        grouped.setdefault(why, []).append(col)
    section["skipped"] = grouped
    return section
