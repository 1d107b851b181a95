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

Modules: ``tables`` (reading Parquet parts and the manifest), ``plots`` (figures), ``sections``
(utterances / instructions / rejects), ``cells`` (value formatting, embedded audio); this one renders the page.

CLI: ``python -m pipeline.dataset.report DATASET_DIR [-o OUT] [--title T] [--max-samples N]``.
"""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from pipeline import ROOT
from pipeline.dataset.report.cells import _size, audio_mime
from pipeline.dataset.report.sections import (
    REJECTS_SHOWN,
    _group_notes,
    _instruction_section,
    _reject_section,
    _utterance_section,
)
from pipeline.dataset.report.tables import TABLES, _open_table, _read_manifest

__all__ = ["audio_mime", "main", "write_report"]

TEMPLATE = ROOT / "prompts" / "report.html.j2"


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
    ap = argparse.ArgumentParser(prog="python -m pipeline.dataset.report", description=__doc__.splitlines()[0])
    ap.add_argument("dataset_dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=None)
    ap.add_argument("--title", default=None)
    ap.add_argument("--max-samples", type=int, default=12)
    a = ap.parse_args(argv)
    print(write_report(a.dataset_dir, a.out, title=a.title, max_samples=a.max_samples))

