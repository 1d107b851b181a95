"""Checkpoints of the trainable weights (safetensors) + optimizer/RNG state: save, resume, pick the one to score.
Shared by the DeSTA and GRASS runs (the weights file and its metadata are parameters)."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np

from pipeline.train.common import TrainError, torch_module
from pipeline.train.run import TrainRun


def truncate_log(path: Path, step: int) -> None:
    """Drop train_log.jsonl records after ``step`` (a resumed run writes them again)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(x + "\n" for x in keep))


def copy_dir_atomic(src: Path, dst: Path, exclude: tuple[str, ...] = ()) -> None:
    """Replace ``dst`` by a copy of ``src`` (written next to it, then renamed)."""
    tmp = dst.with_name(f".tmp-{dst.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*exclude))
    old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)


def eval_checkpoint(tr: TrainRun) -> Path | None:
    """The checkpoint evaluate() scores: lowest validation loss (cfg.eval_checkpoint == "best") or the last."""
    best = tr.ckpt_dir / "best"
    if tr.cfg.eval_checkpoint == "best" and (best / "meta.json").exists():
        return best
    return tr.last_checkpoint()


def save_checkpoint(tr: TrainRun, model, opt, sched, step: int, history: dict, weights: str = "adapter.safetensors",
                    weights_meta: dict | None = None, extra_meta: dict | None = None) -> Path:
    """Trainable weights (safetensors) + optimizer/RNG state, written to a temp dir then renamed; older
    checkpoints beyond keep_checkpoints are removed. Shared by the DeSTA and GRASS runs."""
    torch = torch_module()
    from safetensors.torch import save_file

    tr.ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = tr.ckpt_dir / f"step-{step:06d}"
    tmp = tr.ckpt_dir / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = weights_meta if weights_meta is not None else {"llm": tr.cfg.llm, "encoder": tr.cfg.encoder}
    save_file(model.state(), str(tmp / weights), metadata={"step": str(step), **meta})
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(), "numpy_rng": np.random.get_state()}, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, "config_digest": tr.config_digest(), "data_digest": tr.data_digest(),
                                               "history": history, **(extra_meta or {}),
                                               "train_config": tr.cfg.model_dump()}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in tr.checkpoints()[: -max(1, tr.cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resume_checkpoint(tr: TrainRun, last: Path, model, opt, sched, weights: str, trained_with: str) -> dict:
    """Load a checkpoint written by save_checkpoint into model/optimizer/scheduler and restore the RNGs;
    refuses one made with another config or data. Returns its meta.json."""
    torch = torch_module()
    from safetensors.torch import load_file

    meta = json.loads((last / "meta.json").read_text())
    if meta["config_digest"] != tr.config_digest() or meta["data_digest"] != tr.data_digest():
        raise TrainError(f"{last} was trained with another {trained_with} or data (digests {meta['config_digest']}/"
                         f"{meta['data_digest']} vs {tr.config_digest()}/{tr.data_digest()}); "
                         "pass --overwrite or use another --output-dir")
    model.load_state(load_file(str(last / weights)))
    state = torch.load(last / "trainer_state.pt", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    return meta
