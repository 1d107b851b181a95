"""The DeSTA training loop: lr schedule, seeded batches, mean loss, and fit (resumable from a checkpoint)."""
from __future__ import annotations

import json
import math
import time

import numpy as np

from pipeline.core.config import TrainConfig
from pipeline.train.checkpoint import copy_dir_atomic, resume_checkpoint, save_checkpoint, truncate_log
from pipeline.train.common import count, seed_everything, torch_module
from pipeline.train.data import Example
from pipeline.train.model import SpeechLM, speech_lm
from pipeline.train.run import TrainRun


def lr_lambda(cfg: TrainConfig):
    """LambdaLR factor per step: linear warm-up, then cosine down to 10 %."""
    def f(step: int) -> float:  # linear warm-up, cosine to 10 %
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))
    return f


def batch_indices(n: int, bs: int, seed: int, step: int) -> list[int]:
    """Indices of the batch for a global step: a seeded permutation per epoch (so resume is exact)."""
    per_epoch = max(1, math.ceil(n / bs))
    epoch, b = divmod(step, per_epoch)
    perm = np.random.default_rng(seed + epoch).permutation(n)
    return perm[b * bs:(b + 1) * bs].tolist()


def mean_loss(tr: TrainRun, model: SpeechLM, examples: list[Example], bs: int | None = None) -> float | None:
    if not examples:
        return None
    torch = torch_module()
    bs = bs or tr.cfg.batch_size
    total, n = 0.0, 0
    model.adapter.eval()
    with torch.no_grad():
        for i in range(0, len(examples), bs):
            chunk = examples[i:i + bs]
            total += float(model.loss(chunk, tr.features([e.audio_key for e in chunk]))) * len(chunk)
            n += len(chunk)
    return total / n


def stop_early(cfg: TrainConfig, log_path, history: dict, step: int) -> bool:
    """Early stopping: the last ``early_stopping_patience`` validation checks of train_log.jsonl (this step's
    included: it is written first) found no new lowest validation loss."""
    if cfg.early_stopping_patience <= 0 or "best_step" not in history:
        return False
    checks = [json.loads(x)["step"] for x in log_path.read_text().splitlines() if x.strip() and "val_loss" in x]
    return step in checks and sum(s > history["best_step"] for s in checks) >= cfg.early_stopping_patience


def fit(tr: TrainRun) -> dict:
    """Train the adapter (+LoRA) up to max_steps, resuming from the last checkpoint."""
    torch = torch_module()
    cfg = tr.cfg
    seed_everything(cfg.seed)
    model = speech_lm(tr)
    train, val = tr.split("train"), tr.split("val")
    probe = train[:16]  # fixed subset: train loss before/after (independent of batch draws)
    params = list(model.trainable().values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    step, resumed_from, history = 0, None, {}
    log_path = tr.dir / "train_log.jsonl"
    last = tr.last_checkpoint()
    if last is not None:
        meta = resume_checkpoint(tr, last, model, opt, sched, "adapter.safetensors", "model config")
        step = resumed_from = meta["step"]
        history = meta.get("history", {})
        truncate_log(log_path, step)
    else:
        log_path.unlink(missing_ok=True)
        history["initial_probe_loss"] = mean_loss(tr, model, probe)
        history["initial_val_loss"] = mean_loss(tr, model, val)
    t0 = time.time()
    steps_run = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=step, desc="     fit", unit="step", disable=step >= cfg.max_steps)
    with open(log_path, "a") as log, bar:
        while step < cfg.max_steps and not history.get("stopped_early_at"):
            model.adapter.train()
            idx = batch_indices(len(train), cfg.batch_size, cfg.seed, step)
            chunk = [train[i] for i in idx]
            loss = model.loss(chunk, tr.features([e.audio_key for e in chunk]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            sched.step()
            step += 1
            steps_run += 1
            rec = {"step": step, "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0], "grad_norm": round(gn, 4),
                   "tasks": count(e.task for e in chunk), "t": round(time.time() - t0, 2)}
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", examples_per_s=f"{steps_run * cfg.batch_size / max(rec['t'], 1e-6):.2f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                rec["val_loss"] = mean_loss(tr, model, val)
                if step == cfg.max_steps:
                    history["final_probe_loss"] = mean_loss(tr, model, probe)
                    history["final_val_loss"] = rec["val_loss"]
                log.write(json.dumps(rec) + "\n")
                log.flush()
                best = rec["val_loss"] is not None and rec["val_loss"] < history.get("best_val_loss", float("inf"))
                if best:
                    history["best_step"], history["best_val_loss"] = step, rec["val_loss"]
                if stop_early(cfg, log_path, history, step):
                    history["stopped_early_at"] = step
                    history["final_probe_loss"] = mean_loss(tr, model, probe)
                    history["final_val_loss"] = rec["val_loss"]
                ck = save_checkpoint(tr, model, opt, sched, step, history)
                if best:
                    copy_dir_atomic(ck, tr.ckpt_dir / "best", exclude=("trainer_state.pt",))
            else:
                log.write(json.dumps(rec) + "\n")
                log.flush()
    seconds = time.time() - t0
    if steps_run:
        tr.timing("fit", seconds)
    trainable = sum(p.numel() for p in params)
    return {"step": step, "resumed_from": resumed_from, "steps_run": steps_run, "seconds": round(seconds, 1),
            "trainable_params": trainable, **history}
