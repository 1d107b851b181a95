"""Scoring GRASS on the test split: the base Whisper, the fine-tuned decoder and its silence / shuffled-audio
controls -> grass/metrics.json, grass/predictions.jsonl."""
from __future__ import annotations

import json
import time

import numpy as np

from pipeline.core.audio import SAMPLE_RATE
from pipeline.train.checkpoint import eval_checkpoint
from pipeline.train.common import SPLITS, TrainError, seed_everything, torch_module, write_json
from pipeline.train.data import Example, answer_class, other_group_index
from pipeline.train.evaluate import score_task
from pipeline.train.grass.config import SYSTEM_DOC, SYSTEMS
from pipeline.train.grass.model import GrassModel
from pipeline.train.grass.run import GrassRun
from pipeline.train.stats import CI_LEVEL, bootstrap, separated


SILENCE = -1  # audio source of the model_silence control


def _predict(gr: GrassRun, model: GrassModel, exs: list[Example], systems: dict[str, list[int]], recs: list[dict],
             silence) -> None:
    """Fill recs[i][system] for each system ({name: per example, the index of the example whose clip the model
    hears, or SILENCE}). Encoder outputs are loaded per batch (the cache holds them; a test split's worth of
    1500-frame outputs would not fit in GPU memory)."""
    cfg = gr.cfg
    task_of = {lt.name: lt for lt in cfg.label_tasks}

    def states(src: list[int]):
        st = gr.states(model, [exs[j] for j in src if j != SILENCE]) if any(j != SILENCE for j in src) else None
        parts, k = [], 0
        for j in src:
            if j == SILENCE:
                parts.append(silence)
            else:
                parts.append(st[k])
                k += 1
        return model.torch.stack(parts)

    for system, src in systems.items():
        groups: dict[int, list[int]] = {}  # free answers: one batch per prefix length
        for i, e in enumerate(exs):
            if e.kind == "label":  # closed question
                choice, scores = model.choose(e.user, states([src[i]])[0], e.choices)
                recs[i][system], recs[i][f"{system}_scores"] = choice, [round(s, 3) for s in scores]
            else:
                groups.setdefault(len(model.prefix(e.user)), []).append(i)
        for idx in groups.values():
            for j in range(0, len(idx), cfg.batch_size):
                part = idx[j:j + cfg.batch_size]
                st = states([src[i] for i in part])
                prefixes = [model.prefix(exs[i].user) for i in part]
                if len({tuple(p) for p in prefixes}) == 1:
                    texts = model.generate(prefixes[0], st, cfg.max_new_tokens)
                else:  # same length, different prompts: one by one
                    texts = [model.generate(p, st[k:k + 1], cfg.max_new_tokens)[0] for k, p in enumerate(prefixes)]
                for i, t in zip(part, texts):
                    recs[i][system] = t
        for i, e in enumerate(exs):
            if e.kind == "label_text":
                recs[i][f"{system}_class"] = answer_class(recs[i][system], e.choices, task_of[e.task].synonyms)


def evaluate(gr: GrassRun) -> dict:
    """Score the base model and the fine-tuned checkpoint (+ controls) on the test split -> grass/metrics.json."""
    from safetensors.torch import load_file

    torch = torch_module()
    cfg = gr.cfg
    seed_everything(cfg.seed)
    ck = eval_checkpoint(gr)
    if ck is None:
        raise TrainError(f"no checkpoint under {gr.ckpt_dir}: run fit first")
    by_task: dict[str, list[Example]] = {}
    for e in gr.split("test"):
        by_task.setdefault(e.task, []).append(e)
    tasks_ex = {t: (exs[: cfg.max_eval_examples] if cfg.max_eval_examples else exs) for t, exs in sorted(by_task.items())}
    t0 = time.time()
    model = gr.model()
    recs = {t: [{"id": e.id, "task": t, "kind": e.kind, "group": e.group, "reference": e.reference, "meta": e.meta} for e in exs]
            for t, exs in tasks_ex.items()}
    if gr._tuned:  # this run object changed the decoder in memory (fit / an earlier evaluate): reload the pretrained one
        gr._model, gr._tuned = None, False
        model = gr.model()
    # phase 1: the pretrained decoder; phase 2: the checkpoint loaded over it
    model.decoder.eval()
    silence = gr.encode(model, [np.zeros(SAMPLE_RATE, np.float32)])[0].to(torch.float16).float()
    for t, exs in tasks_ex.items():
        _predict(gr, model, exs, {"base": list(range(len(exs)))}, recs[t], silence)
    # phase 2: the fine-tuned decoder
    model.load_state(load_file(str(ck / "decoder.safetensors")))
    gr._tuned = True
    for t, exs in tasks_ex.items():
        n = len(exs)
        _predict(gr, model, exs, {"model": list(range(n)), "model_silence": [SILENCE] * n,
                                  "model_shuffled_audio": [other_group_index(exs, i) for i in range(n)]}, recs[t], silence)
    gr.timing("evaluate", time.time() - t0)
    preds = [r for t in recs for r in recs[t]]
    tasks = {}
    for task, rows in recs.items():
        kind, metric, scores, rows = score_task(rows, SYSTEMS)
        higher = metric != "wer"
        better = (lambda a, b: a > b) if higher else (lambda a, b: a < b)
        entry = {"metric": metric, "higher_is_better": higher, "n": len(rows), "scores": {k: round(v, 4) for k, v in scores.items()},
                 "model_beats_base": bool(better(scores["model"], scores["base"])),
                 "model_uses_audio": bool(better(scores["model"], scores["model_shuffled_audio"])),
                 "model_beats_silence": bool(better(scores["model"], scores["model_silence"]))}
        if kind in ("label", "label_text"):
            ref = [p["reference"] for p in rows]
            entry["majority_class_accuracy"] = round(max(ref.count(c) for c in set(ref)) / len(ref), 4)
        entry["ci"] = ci = bootstrap(kind, rows, SYSTEMS, seed=cfg.seed)
        for other in ("base", "model_silence", "model_shuffled_audio"):
            entry[f"model_beats_{other}_ci"] = separated(ci, "model", other, higher)
        tasks[task] = entry
    with open(gr.dir / "predictions.jsonl", "w") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    meta = json.loads((ck / "meta.json").read_text())
    label_tasks = [t for t in tasks if tasks[t]["metric"] == "accuracy"]
    failures = [t for t in label_tasks if not tasks[t]["model_uses_audio"]]
    metrics = {
        "variant": "grass", "language": gr.profile.language, "data_dir": str(gr.data_dir),
        "checkpoint": str(ck.relative_to(gr.dir)), "step": meta["step"],
        "trained_steps": int(gr.last_checkpoint().name.split("-")[1]), "eval_checkpoint": cfg.eval_checkpoint,
        "systems": SYSTEM_DOC, "tasks": tasks,
        "label_tasks_use_audio": not failures if label_tasks else None, "label_task_failures": failures,
        "ci_level": CI_LEVEL, "ci_method": "paired cluster bootstrap over test groups (speakers)",
        "training": {**json.loads((gr.last_checkpoint() / "meta.json").read_text()).get("history", {}),
                     "trainable_params": sum(p.numel() for p in model.trainable().values()),
                     "frozen_encoder_params": sum(p.numel() for p in model.encoder.parameters())},
        "split": {s: len(gr.split(s)) for s in SPLITS},
        "config": {"whisper": gr.grass.whisper, "language_token": gr.language, "task_token": gr.grass.task_token,
                   "use_prompt": gr.grass.use_prompt, "max_steps": cfg.max_steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                   "device": cfg.device, "dtype": cfg.dtype,
                   "decoding": f"greedy, text tokens only, no_repeat_ngram_size={gr.grass.no_repeat_ngram_size}, "
                               f"max_new_tokens={cfg.max_new_tokens}; labels: max log-likelihood choice"},
        "timings_s": gr.timings(),
    }
    write_json(gr.dir / "metrics.json", metrics)
    return metrics

