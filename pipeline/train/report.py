"""Markdown reports of a training run (report.md + loss.png), shared by the DeSTA and GRASS variants:
the DeSTA report, the GRASS summary (its own report and the DeSTA report's GRASS section), the training
section (loss curve, checkpoint table, sample predictions) and the loss plot."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline.train.common import SPLITS
from pipeline.train.evaluate import SYSTEMS
from pipeline.train.run import TrainRun

def write_report(tr: TrainRun) -> Path:
    """report.md (+ loss.png) from metrics.json, split.json, train_log.jsonl and predictions.jsonl."""
    m = json.loads((tr.dir / "metrics.json").read_text())
    split = json.loads((tr.dir / "split.json").read_text())
    log = [json.loads(x) for x in (tr.dir / "train_log.jsonl").read_text().splitlines() if x.strip()]
    preds = [json.loads(x) for x in (tr.dir / "predictions.jsonl").read_text().splitlines() if x.strip()]
    plot_loss(log, tr.dir / "loss.png")
    c, t, h = m["config"], m["timings_s"], m["training"]
    lines = [f"# Speech LM training report ({m['language']})", "",
             f"DeSTA2-style: frozen Whisper encoder `{c['encoder']}` -> trainable {c['adapter']} adapter "
             f"({h['trainable_params']:,} parameters{', LoRA rank %d' % c['lora_rank'] if c['lora_rank'] else ''}) -> frozen LLM `{c['llm']}`.",
             f"Trained {m['trained_steps']} steps (batch {c['batch_size']}, lr {c['lr']}, {c['device']}/{c['dtype']}); scored: "
             f"`{m['checkpoint']}` (step {m['step']}, {'lowest validation loss' if m['checkpoint'].endswith('best') else 'last step'}). "
             f"Data: `{m['data_dir']}`.", "",
             "Time (s): " + ", ".join(f"{k} {v}" for k, v in t.items()), "", "## Verdict", ""]
    if m["label_tasks_beat_no_audio"] is None:
        lines.append("No label task in the test split: no accuracy verdict.")
    elif m["label_tasks_beat_no_audio"]:
        lines.append("The trained model beats the no-audio baseline on every label task.")
    else:
        lines.append(f"**FAILURE: the trained model does not beat the no-audio baseline on {', '.join(m['label_task_failures'])}.** "
                     "It has not learned to use the audio for these labels (see the shuffled-audio control and the test size n).")
    for task, e in m["tasks"].items():
        verdict = "beats" if e["model_beats_no_audio"] else "does NOT beat"
        uses = "better with the right audio than with shuffled audio" if e["model_uses_audio"] else "no better with the right audio than with shuffled audio"
        lines.append(f"- `{task}` ({e['metric']}, n={e['n']}): model {verdict} no-audio ({fmt(e['scores']['model'])} vs "
                     f"{fmt(e['scores']['no_audio'])}); {uses}.")
    lines += ["", "## Scores on the held-out test split", "",
              "| task | metric | n | " + " | ".join(SYSTEMS) + " |", "|---|---|---:|" + "---:|" * len(SYSTEMS)]
    for task, e in m["tasks"].items():
        arrow = "↑" if e["higher_is_better"] else "↓"
        extra = f" (majority {e['majority_class_accuracy']:.2f})" if "majority_class_accuracy" in e else ""
        lines.append(f"| {task} | {e['metric']} {arrow}{extra} | {e['n']} | " + " | ".join(fmt_ci(e, s) for s in SYSTEMS) + " |")
    lines += ["", "Systems: " + "; ".join(f"**{k}**: {v}" for k, v in m["systems"].items()) + ".",
              *([f"Intervals: {m['ci_level']:.0%}, {m['ci_method']}."] if "ci_method" in m else []),
              f"Decoding: {c['decoding']}.", "",
              "## Split (by %s; TTS rows by text id)" % split["split_by"], "",
              "| split | groups | examples | by task |", "|---|---:|---:|---|"]
    for s in SPLITS:
        v = split["summary"][s]
        lines.append(f"| {s} | {v['groups']} | {v['examples']} | " + ", ".join(f"{k} {n}" for k, n in v["by_task"].items()) + " |")
    ov = split["overlap"]
    lines += ["", "Overlap between splits: " + ("none (speakers/sources/texts and audio clips are disjoint)." if not any(ov.values())
                                                 else f"**{ov}**"), "",
              *training_lines(h, log, preds, SYSTEMS)]
    grass = tr.dir / "grass" / "metrics.json"
    if grass.exists():  # the GRASS variant (pipeline/train/grass/) was run on the same split
        lines += ["## GRASS variant (Whisper decoder fine-tuned on the same data)", "", *grass_summary_lines(grass, m, "grass/report.md")]
    lines += ["## Notes", "",
              "- GRASS variant (fine-tuning the Whisper *decoder* on spoken instructions, encoder frozen): "
              + ("scored above, details in `grass/report.md`." if grass.exists() else
                 "not run for this report. It is `pipeline/train/grass/` (`python -m pipeline train --lang "
                 f"{m['language']} --variant grass --whisper openai/whisper-small`, or a local transformers Whisper "
                 "directory); it needs PyTorch Whisper weights, and only the CTranslate2 conversion is embedded offline."),
              "- Scores on this sample are from a very small test split (see n); treat them as a smoke test of the "
              "method, not as a measurement of it.", ""]
    out = tr.dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def grass_summary_lines(metrics_path: Path, desta: dict | None = None, link: str | None = None, systems=None) -> list[str]:
    """Markdown lines summarising a GRASS metrics.json (for its own report and for the DeSTA report).
    ``systems``: the score columns, by default those the run wrote (its ``systems``, in order)."""
    m = json.loads(Path(metrics_path).read_text())
    c, h = m["config"], m["training"]
    systems = tuple(systems or m["systems"])
    lines = [f"GRASS: Whisper `{c['whisper']}` with a frozen encoder ({h['frozen_encoder_params']:,} parameters) and a fine-tuned "
             f"decoder ({h['trainable_params']:,} parameters); text prompt as `<|startofprev|>` tokens: {c['use_prompt']}. "
             f"Trained {m['trained_steps']} steps (batch {c['batch_size']}, lr {c['lr']}, {c['device']}/{c['dtype']}); "
             f"scored `{m['checkpoint']}` (step {m['step']}) on the same test split" + (f" ([report]({link}))." if link else "."), ""]
    cols = list(systems) + (["desta_model"] if desta else [])
    lines += ["| task | metric | n | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for task, e in m["tasks"].items():
        arrow = "↑" if e["higher_is_better"] else "↓"
        vals = [fmt(e["scores"][s]) for s in systems]
        if desta:
            d = desta.get("tasks", {}).get(task)
            vals.append(fmt(d["scores"]["model"]) if d else "n/a")
        lines.append(f"| {task} | {e['metric']} {arrow} | {e['n']} | " + " | ".join(vals) + " |")
    lines.append("")
    for task, e in m["tasks"].items():
        lines.append(f"- `{task}`: fine-tuned model {'beats' if e['model_beats_base'] else 'does NOT beat'} the base Whisper; "
                     f"{'better' if e['model_uses_audio'] else 'no better'} with the right audio than with shuffled audio; "
                     f"{'better' if e['model_beats_silence'] else 'no better'} than with silence.")
    return lines + [""]


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def fmt_ci(e: dict, system: str) -> str:
    """A task entry's score of one system, with its 90 % interval when the metrics have one."""
    ci = e.get("ci", {}).get(system)
    return fmt(e["scores"][system]) + (f" [{fmt(ci['ci'][0])}, {fmt(ci['ci'][1])}]" if ci else "")


def training_lines(h: dict, log: list[dict], preds: list[dict], systems) -> list[str]:
    """Report markdown: loss curve, probe/validation loss, the checkpoint table and two sample predictions per task."""
    lines = ["## Training", "", "![training loss](loss.png)", "",
             f"Probe loss (fixed 16 training examples): {fmt(h.get('initial_probe_loss'))} -> {fmt(h.get('final_probe_loss'))}; "
             f"validation loss: {fmt(h.get('initial_val_loss'))} -> {fmt(h.get('final_val_loss'))}.", ""]
    ckpts = [r for r in log if "val_loss" in r]
    if ckpts:
        lines += ["| step | train loss | val loss |", "|---:|---:|---:|"] + [f"| {r['step']} | {r['loss']:.3f} | {fmt(r['val_loss'])} |" for r in ckpts]
    lines += ["", "## Sample predictions", ""]
    for task in sorted({p["task"] for p in preds}):
        for p in [p for p in preds if p["task"] == task][:2]:
            lines += [f"**{task}** `{p['id']}`", "", f"- reference: {md(p['reference'])}"]
            lines += [f"- {s}: {md(p[s])}" for s in systems] + [""]
    return lines


def md(s: str) -> str:
    s = (s or "").replace("\n", " ").replace("|", "\\|")
    return s[:300] + ("..." if len(s) > 300 else "")


def plot_loss(log: list[dict], path: Path) -> None:
    if not log:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    steps, loss = [r["step"] for r in log], [r["loss"] for r in log]
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="train (batch)")
    k = max(1, len(loss) // 20)
    if len(loss) >= 2 * k and k > 1:
        sm = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], sm, lw=1.5, label=f"train ({k}-step mean)")
    v = [(r["step"], r["val_loss"]) for r in log if r.get("val_loss") is not None]
    if v:
        ax.plot(*zip(*v), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

