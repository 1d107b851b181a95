"""bench/results/bench_train.{json,md}: the numbers of bench_train.py, with the issue's targets checked."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

DESTA_CONTROLS = ("no_audio", "asr_text", "model_shuffled_audio")
GRASS_CONTROLS = ("base", "model_silence", "model_shuffled_audio")


def _ci(e: dict, s: str) -> str:
    c = e["ci"][s]
    return f"{c['score']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}]"


def targets(desta: dict) -> dict:
    """The issue's 'done when' items, each True/False with what was compared."""
    t = desta["tasks"]
    out = {}
    g = t.get("label:gender")
    if g:
        out["gender_accuracy_ge_0.9"] = g["scores"]["model"] >= 0.9
        out["gender_ci_above_no_audio_and_shuffled"] = g["model_beats_no_audio_ci"] and g["model_beats_shuffled_audio_ci"]
    for name in ("label:speaking_rate", "label:pitch"):
        if name in t:
            out[f"{name.split(':')[1]}_ci_above_no_audio_and_shuffled"] = (t[name]["model_beats_no_audio_ci"]
                                                                            and t[name]["model_beats_shuffled_audio_ci"])
    a = t.get("asr")
    if a:
        out["asr_wer_below_no_audio_and_shuffled"] = (a["scores"]["model"] < a["scores"]["no_audio"]
                                                      and a["scores"]["model"] < a["scores"]["model_shuffled_audio"])
        out["asr_wer_ci_below_no_audio_and_shuffled"] = a["model_beats_no_audio_ci"] and a["model_beats_shuffled_audio_ci"]
    return out


def _table(m: dict, systems: tuple[str, ...]) -> list[str]:
    lines = ["| task | metric | n | speakers | " + " | ".join(systems) + " |", "|---|---|---:|---:|" + "---|" * len(systems)]
    for task, e in m["tasks"].items():
        arrow = "↑" if e["higher_is_better"] else "↓"
        lines.append(f"| {task} | {e['metric']} {arrow} | {e['n']} | {e['ci']['groups']} | "
                     + " | ".join(_ci(e, s) for s in systems) + " |")
    return lines


def write(results: Path, corpus: dict, dataset: dict, desta: dict, grass: dict | None, timings: dict, command: str,
          load_avg=None) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    goal = targets(desta)
    doc = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": command, "machine": {"platform": platform.platform(),
           "load_avg_at_end": [round(x, 2) for x in (load_avg or [])]}, "corpus": corpus, "dataset": dataset,
           "timings_s": timings, "targets": goal, "desta": desta, "grass": grass}
    (results / "bench_train.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    c, s = desta["config"], desta["split"]
    h = desta["training"]
    lines = ["# bench_train: does the produced data teach a speech LM?", "",
             f"`{command}` ({doc['date']}; load average at the end {doc['machine']['load_avg_at_end']}).", "",
             f"Corpus: {corpus['utterances']} utterances, {corpus['speakers']} speakers ({corpus['female']} female, "
             f"{corpus['male']} male; Kokoro styles/blends, Piper joe, espeak-ng voices x variants), speeds {corpus['speeds']} "
             f"(length scale), SNRs {corpus['snrs']} dB; every sentence unique. Split by speaker: {s}.", "",
             "Time of this run (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()) + ". First build (cached since): "
             f"corpus synthesis {corpus.get('first_build_synth_s')} s; dataset stages "
             + ", ".join(f"{k} {v}" for k, v in dataset["timings_s"].items()) + " s.", "",
             "## Targets (issue 19)", ""]
    lines += [f"- {k}: **{'yes' if v else 'NO'}**" for k, v in goal.items()]
    lines += ["", f"## DeSTA2-style model ({c['adapter']} adapter, {h['trainable_params']:,} parameters, frozen `{c['llm']}`)", "",
              f"Scored `{desta['checkpoint']}` (step {desta['step']} of {desta['trained_steps']} trained"
              + (f", early stop at {h['stopped_early_at']}" if h.get("stopped_early_at") else "") + f"; lr {c['lr']}, batch {c['batch_size']}). "
              f"Score [90 % interval: {desta['ci_method']}].", "", *_table(desta, ("model", *DESTA_CONTROLS)), ""]
    probe = desta.get("linear_probe")
    if probe:
        lines += ["Linear probe (a logistic regression on the frozen encoder's pooled features, same speaker split; what "
                  "a linear read-out of the audio gets): " + ", ".join(
                      f"{k} {v['accuracy']:.3f} (n = {v['n_test']})" for k, v in probe.items()) + ".", ""]
    if grass:
        gc = grass["config"]
        lines += [f"## GRASS: Whisper base decoder fine-tuned (`{gc['whisper']}`, converted from CTranslate2)", "",
                  f"Scored `{grass['checkpoint']}` (step {grass['step']} of {grass['trained_steps']}; lr {gc['lr']}).", "",
                  *_table(grass, ("model", *GRASS_CONTROLS)), ""]
    conv = (grass or {}).get("conversion_check")
    if conv:
        sm = conv["summary"]
        lines += [f"Conversion check (samples/en, {sm['clips']} clips, CTranslate2 float32 vs transformers float32, same log-mel): "
                  f"identical greedy token ids on {sm['identical_greedy_ids']}/{sm['clips']}; encoder output max abs difference "
                  f"{sm['encoder_max_abs_diff']}, min cosine {sm['encoder_min_cosine']}.", ""]
    ag = dataset.get("agreement", {})
    lines += ["## The tool's own labels vs the known ones", "", "| label | n | agreement | confusion (known -> tool) |", "|---|---:|---:|---|"]
    for k, v in ag.items():
        if isinstance(v, dict):
            lines.append(f"| {k} | {v['n']} | {v['agreement']:.3f} | {json.dumps(v['confusion'])} |")
    out = results / "bench_train.md"
    out.write_text("\n".join(lines) + "\n")
    return out
