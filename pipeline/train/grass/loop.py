"""GRASS decoder fine-tuning: mean loss, checkpoints of the decoder, and fit (the DeSTA run's schedule and
batches; resumable, and stoppable after a number of steps)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.train.checkpoint import copy_dir_atomic, resume_checkpoint, truncate_log
from pipeline.train.checkpoint import save_checkpoint as save_train_checkpoint
from pipeline.train.common import count, seed_everything, torch_module
from pipeline.train.data import Example
from pipeline.train.grass.model import GrassModel
from pipeline.train.grass.run import GrassRun
from pipeline.train.loop import batch_indices, lr_lambda


def mean_loss(gr: GrassRun, model: GrassModel, examples: list[Example], bs: int | None = None) -> float | None:
    if not examples:
        return None
    bs = bs or gr.cfg.batch_size
    total = 0.0
    was = model.decoder.training
    model.decoder.eval()
    with model.torch.no_grad():
        for i in range(0, len(examples), bs):
            chunk = examples[i:i + bs]
            total += float(model.loss(chunk, gr.states(model, chunk))) * len(chunk)
    model.decoder.train(was)
    return total / len(examples)


def save_checkpoint(gr: GrassRun, model: GrassModel, opt, sched, step: int, history: dict) -> Path:
    """Decoder weights + optimizer/RNG state (pipeline.train.checkpoint.save_checkpoint)."""
    return save_train_checkpoint(gr, model, opt, sched, step, history, weights="decoder.safetensors",
                                 weights_meta={"whisper": gr.grass.whisper}, extra_meta={"grass_config": gr.grass.model_dump()})


def fit(gr: GrassRun, steps: int | None = None) -> dict:
    """Fine-tune the decoder up to max_steps, resuming from the last checkpoint (same schedule/batches as DeSTA's fit).

    ``steps``: stop after that many steps in this call (a checkpoint is written where it stops), e.g. to
    train within a time slot; the next call continues exactly as an uninterrupted run would."""
    torch = torch_module()
    cfg = gr.cfg
    seed_everything(cfg.seed)
    model = gr.model()
    gr._tuned = True
    train, val = gr.split("train"), gr.split("val")
    probe = train[:16]
    params = list(model.trainable().values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    step, resumed_from, history = 0, None, {}
    log_path = gr.dir / "train_log.jsonl"
    last = gr.last_checkpoint()
    if last is not None:
        meta = resume_checkpoint(gr, last, model, opt, sched, "decoder.safetensors", "Whisper/prompt format")
        for g, base in zip(opt.param_groups, sched.base_lrs):  # the schedule of this run's max_steps (may have grown)
            g["lr"] = base * sched.lr_lambdas[0](sched.last_epoch)
        step = resumed_from = meta["step"]
        history = meta.get("history", {})
        truncate_log(log_path, step)
    else:
        log_path.unlink(missing_ok=True)
        history["initial_probe_loss"] = mean_loss(gr, model, probe)
        history["initial_val_loss"] = mean_loss(gr, model, val)
    t0 = time.time()
    steps_run, saved = 0, step
    with open(log_path, "a") as log:
        while step < cfg.max_steps and (steps is None or steps_run < steps):
            model.decoder.train()
            chunk = [train[i] for i in batch_indices(len(train), cfg.batch_size, cfg.seed, step)]
            loss = model.loss(chunk, gr.states(model, chunk))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            sched.step()
            step += 1
            steps_run += 1
            rec = {"step": step, "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0], "grad_norm": round(gn, 4),
                   "tasks": count(e.task for e in chunk), "t": round(time.time() - t0, 2)}
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                rec["val_loss"] = mean_loss(gr, model, val)
                if step == cfg.max_steps:
                    history["final_probe_loss"] = mean_loss(gr, model, probe)
                    history["final_val_loss"] = rec["val_loss"]
                best = rec["val_loss"] is not None and rec["val_loss"] < history.get("best_val_loss", float("inf"))
                if best:
                    history["best_step"], history["best_val_loss"] = step, rec["val_loss"]
                log.write(json.dumps(rec) + "\n")
                log.flush()
                ck, saved = save_checkpoint(gr, model, opt, sched, step, history), step
                if best:
                    copy_dir_atomic(ck, gr.ckpt_dir / "best", exclude=("trainer_state.pt",))
            else:
                log.write(json.dumps(rec) + "\n")
                log.flush()
    if step != saved:  # stopped between checkpoints (steps=...): save where it stopped
        save_checkpoint(gr, model, opt, sched, step, history)
    seconds = time.time() - t0
    if steps_run:
        gr.timing("fit", seconds)
    model.decoder.eval()
    return {"step": step, "resumed_from": resumed_from, "steps_run": steps_run, "seconds": round(seconds, 1),
            "trainable_params": sum(p.numel() for p in params), **history}
