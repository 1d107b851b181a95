"""grass/report.md (+ loss.png): the GRASS summary (pipeline.train.report) next to the DeSTA scores when
they exist, systems, timings, split and the training section."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.train.grass.config import SYSTEMS
from pipeline.train.grass.run import GrassRun
from pipeline.train.report import grass_summary_lines, plot_loss, training_lines


def write_report(gr: GrassRun) -> Path:
    """grass/report.md (+ loss.png) from grass/metrics.json, split.json, train_log.jsonl, predictions.jsonl."""
    m = json.loads((gr.dir / "metrics.json").read_text())
    log = [json.loads(x) for x in (gr.dir / "train_log.jsonl").read_text().splitlines() if x.strip()]
    preds = [json.loads(x) for x in (gr.dir / "predictions.jsonl").read_text().splitlines() if x.strip()]
    plot_loss(log, gr.dir / "loss.png")
    h = m["training"]
    desta_path = gr.dir.parent / "metrics.json"
    desta = json.loads(desta_path.read_text()) if desta_path.exists() else None
    lines = [f"# GRASS variant: Whisper decoder fine-tuned on spoken instructions ({m['language']})", "",
             *grass_summary_lines(gr.dir / "metrics.json", desta, systems=SYSTEMS),
             "Systems: " + "; ".join(f"**{k}**: {v}" for k, v in m["systems"].items())
             + ("; **desta_model**: the DeSTA2-style adapter model of ../report.md" if desta else "") + ".",
             f"Decoding: {m['config']['decoding']}.", "",
             "Time (s): " + ", ".join(f"{k} {v}" for k, v in m["timings_s"].items()), "",
             "Split: " + ", ".join(f"{s} {n}" for s, n in m["split"].items()) + " examples (split.json; identical to the DeSTA run's).", "",
             *training_lines(h, log, preds, SYSTEMS)]
    out = gr.dir / "report.md"
    out.write_text("\n".join(lines))
    return out

