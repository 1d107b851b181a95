"""Scoring the trained speech LM on the held-out test split against its baselines and controls.

Systems: the trained model, the frozen LLM without audio, the frozen LLM given the ASR transcript, and the
model fed another clip's audio. ``score_task`` (shared with the GRASS variant) turns prediction records into
accuracy, corpus WER or ROUGE-L.
"""
from __future__ import annotations

import json
import time

import numpy as np

from pipeline.core.rows import AUDIO_TOKEN
from pipeline.core.text import corpus_wer
from pipeline.train.checkpoint import eval_checkpoint
from pipeline.train.common import SPLITS, TrainError, seed_everything, write_json
from pipeline.train.data import Example, answer_class, other_group_index
from pipeline.train.model import speech_lm
from pipeline.train.run import TrainRun
from pipeline.train.stats import CI_LEVEL, bootstrap, separated

SYSTEMS = ("no_audio", "asr_text", "model", "model_shuffled_audio")
SYSTEM_DOC = {
    "no_audio": "frozen LLM, same prompt without the audio",
    "asr_text": "frozen LLM given the ASR transcript as text in place of the audio",
    "model": "trained adapter: frozen LLM with audio embeddings (and the clip's Whisper transcript with transcript_input)",
    "model_shuffled_audio": "trained adapter fed another test clip's audio input (embeddings, and its transcript with "
                            "transcript_input): control, does the model use the audio?",
}


def asr_user(user: str, transcript: str | None) -> str:
    return user.replace(AUDIO_TOKEN, f'(Transcript of the audio: "{transcript or ""}")')


def evaluate(tr: TrainRun) -> dict:
    """Score the last checkpoint and the baselines on the test split -> metrics.json, predictions.jsonl."""
    cfg = tr.cfg
    seed_everything(cfg.seed)
    last = eval_checkpoint(tr)
    if last is None:
        raise TrainError(f"no checkpoint under {tr.ckpt_dir}: run fit first")
    from safetensors.torch import load_file

    model = speech_lm(tr)
    model.load_state(load_file(str(last / "adapter.safetensors")))
    model.adapter.eval()
    test = tr.split("test")
    by_task: dict[str, list[Example]] = {}
    for e in test:
        by_task.setdefault(e.task, []).append(e)
    t0 = time.time()
    preds = []
    from tqdm.auto import tqdm

    n_eval = sum(min(len(v), cfg.max_eval_examples or len(v)) for v in by_task.values())
    bar = tqdm(total=n_eval, desc="evaluate", unit="example")
    for task, exs in sorted(by_task.items()):
        exs = exs[: cfg.max_eval_examples] if cfg.max_eval_examples else exs
        with model.torch.no_grad():
            audio = model.audio_embeddings(tr.features([e.audio_key for e in exs]))
        other = [other_group_index(exs, i) for i in range(len(exs))]  # a clip of another speaker/source if any
        for i, e in enumerate(exs):
            # the shuffled control gets all of the other clip's audio input: its embeddings (and its transcript)
            inputs = {"no_audio": (e.user, None, False, None), "asr_text": (asr_user(e.user, e.transcript), None, False, None),
                      "model": (e.user, audio[i], True, e.transcript),
                      "model_shuffled_audio": (e.user, audio[other[i]], True, exs[other[i]].transcript)}
            rec = {"id": e.id, "task": task, "kind": e.kind, "group": e.group, "reference": e.reference, "meta": e.meta}
            for system, (user, a, lora, transcript) in inputs.items():
                model.set_lora(lora)
                with model.torch.no_grad():
                    prefix = model.prefix(user, a, transcript)
                if e.kind == "label":
                    choice, scores = model.choose(prefix, e.choices)
                    rec[system] = choice
                    rec[f"{system}_scores"] = [round(s, 3) for s in scores]
                else:
                    rec[system] = model.generate(prefix, cfg.max_new_tokens)
                    if e.kind == "label_text":
                        lt = next(lt for lt in cfg.label_tasks if lt.name == e.task)
                        rec[f"{system}_class"] = answer_class(rec[system], e.choices, lt.synonyms)
            model.set_lora(True)
            preds.append(rec)
            bar.update(1)
            bar.set_postfix(task=task, examples_per_s=f"{bar.n / max(time.time() - t0, 1e-6):.2f}")
    bar.close()
    seconds = time.time() - t0
    tr.timing("evaluate", seconds)
    tasks = {}
    for task in sorted({p["task"] for p in preds}):
        kind, metric, scores, rows = score_task([p for p in preds if p["task"] == task], SYSTEMS)
        higher = metric != "wer"
        entry = {"metric": metric, "higher_is_better": higher, "n": len(rows), "scores": {k: round(v, 4) for k, v in scores.items()}}
        if kind in ("label", "label_text"):
            ref = [p["reference"] for p in rows]
            entry["majority_class_accuracy"] = round(max(ref.count(c) for c in set(ref)) / len(ref), 4)
            pred = (lambda p, s: p[s]) if kind == "label" else (lambda p, s: p[f"{s}_class"])
            right = lambda p, s: pred(p, s) == p["reference"]
            entry["model_vs_no_audio"] = {"model_right_only": sum(right(p, "model") and not right(p, "no_audio") for p in rows),
                                          "no_audio_right_only": sum(right(p, "no_audio") and not right(p, "model") for p in rows)}
        ci = bootstrap(kind, rows, SYSTEMS, seed=cfg.seed)
        entry["ci"] = ci
        entry["model_beats_no_audio_ci"] = separated(ci, "model", "no_audio", higher)
        entry["model_beats_shuffled_audio_ci"] = separated(ci, "model", "model_shuffled_audio", higher)
        beats = (scores["model"] > scores["no_audio"]) if higher else (scores["model"] < scores["no_audio"])
        entry["model_beats_no_audio"] = bool(beats)
        entry["model_uses_audio"] = bool((scores["model"] > scores["model_shuffled_audio"]) if higher
                                         else (scores["model"] < scores["model_shuffled_audio"]))
        tasks[task] = entry
    with open(tr.dir / "predictions.jsonl", "w") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    meta = json.loads((last / "meta.json").read_text())
    label_tasks = [t for t in tasks if tasks[t]["metric"] == "accuracy"]
    failures = [t for t in label_tasks if not tasks[t]["model_beats_no_audio"]]
    metrics = {
        "language": tr.profile.language, "data_dir": str(tr.data_dir), "checkpoint": str(last.relative_to(tr.dir)),
        "step": meta["step"], "trained_steps": int(tr.last_checkpoint().name.split("-")[1]),
        "eval_checkpoint": tr.cfg.eval_checkpoint, "systems": SYSTEM_DOC, "tasks": tasks,
        "label_tasks_beat_no_audio": not failures if label_tasks else None, "label_task_failures": failures,
        "ci_level": CI_LEVEL, "ci_method": "paired cluster bootstrap over test groups (speakers)",
        "training": {**json.loads((tr.last_checkpoint() / "meta.json").read_text()).get("history", {}), "trainable_params": sum(v.numel() for v in model.trainable().values())},
        "split": {s: len(tr.split(s)) for s in SPLITS},
        "config": {"encoder": cfg.encoder, "llm": cfg.llm, "adapter": cfg.adapter, "pool": cfg.pool, "summary_token": cfg.summary_token,
                   "transcript_input": cfg.transcript_input, "lora_rank": cfg.lora_rank,
                   "max_steps": cfg.max_steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "device": cfg.device, "dtype": cfg.dtype,
                   "decoding": f"greedy, no_repeat_ngram_size=4, max_new_tokens={cfg.max_new_tokens}; labels: max log-likelihood choice"},
        "timings_s": {**tr.timings()},
    }
    write_json(tr.dir / "metrics.json", metrics)
    return metrics


def score_task(rows: list[dict], systems) -> tuple[str, str, dict[str, float], list[dict]]:
    """Score one task's prediction records for each system: accuracy for label tasks, corpus WER for asr,
    mean ROUGE-L F1 for generated answers. Returns (kind, metric, {system: score}, the rows scored);
    label rows whose reference names no class are not scored."""
    from rouge_score import rouge_scorer

    kinds = {p["kind"] for p in rows}
    kind = "label_text" if "label_text" in kinds else rows[0]["kind"]
    rows = [p for p in rows if p["kind"] == kind]
    metric = {"label": "accuracy", "label_text": "accuracy", "asr": "wer", "generate": "rougeL_f1"}[kind]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = {}
    for s in systems:
        if kind == "label":
            scores[s] = float(np.mean([p[s] == p["reference"] for p in rows]))
        elif kind == "label_text":
            scores[s] = float(np.mean([p[f"{s}_class"] == p["reference"] for p in rows]))
        elif kind == "asr":
            scores[s] = corpus_wer([p["reference"] for p in rows], [p[s] for p in rows])
        else:
            scores[s] = float(np.mean([scorer.score(p["reference"], p[s])["rougeL"].fmeasure for p in rows]))
    return kind, metric, scores, rows

