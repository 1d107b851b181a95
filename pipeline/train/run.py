"""One training run's state under <output_dir>/<lang>/train/ (TrainRun) and its first two steps:
prepare (examples and split -> split.json) and compute_features (frozen encoder outputs, cached)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.core.config import Profile
from pipeline.train.common import SPLITS, TrainError, count, write_json
from pipeline.train.data import Example, build_examples, check_no_overlap, decode_audio, split_groups
from pipeline.train.encoders import load_encoder

# what must match for a checkpoint to be resumed: the architecture (the data is checked by data_digest:
# example ids, texts, audio and split); max_steps, lr, eval settings ... may change between runs
RESUME_KEYS = ("encoder", "llm", "adapter", "pool", "adapter_hidden", "qformer_queries", "qformer_layers", "lora_rank",
               "lora_alpha", "lora_targets")
# what --overwrite removes (the feature cache is kept, with the time it took)
RUN_OUTPUTS = ("split.json", "train_log.jsonl", "metrics.json", "predictions.jsonl", "report.md", "loss.png")


def clear_outputs(run_dir: Path, ckpt_dir: Path) -> None:
    """Remove a run's checkpoints and outputs; features are a content-addressed cache: kept (with their timing)."""
    t = run_dir / "timings.json"
    kept = {k: v for k, v in json.loads(t.read_text()).items() if k == "features"} if t.exists() else {}
    for p in (ckpt_dir, *(run_dir / f for f in RUN_OUTPUTS), t):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if kept:
        t.write_text(json.dumps(kept))


class TrainRun:
    """Paths and shared state of one training run: <output_dir>/<lang>/train/."""

    def __init__(self, profile: Profile, output_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 overwrite: bool = False):
        self.profile, self.cfg = profile, profile.train
        root = Path(output_dir or profile.path(profile.output_dir)) / profile.language
        self.data_dir = Path(data_dir) if data_dir else root
        self.dir = root / "train"
        self.features_dir = self.dir / "features"
        self.ckpt_dir = self.dir / "checkpoints"
        if overwrite:
            clear_outputs(self.dir, self.ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._examples: list[Example] | None = None
        self._audio: dict | None = None

    # -- examples and split ----------------------------------------------------------------------------
    def examples(self) -> list[Example]:
        if self._examples is None:
            ex, self._audio = build_examples(self.data_dir, self.cfg)
            assignment = split_groups(ex, self.cfg)
            for e in ex:
                e.split = assignment[e.group]
            self._examples = ex
        return self._examples

    def audio(self) -> dict:
        self.examples()
        return self._audio

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples() if e.split == name]

    def config_digest(self) -> str:
        d = {k: getattr(self.cfg, k) for k in RESUME_KEYS}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def data_digest(self) -> str:
        ids = [f"{e.id}:{e.split}:{e.audio_key}:{hashlib.sha1((e.user + chr(0) + e.response).encode()).hexdigest()[:12]}"
               for e in self.examples()]
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]

    def timing(self, step: str, seconds: float) -> None:
        p = self.dir / "timings.json"
        t = json.loads(p.read_text()) if p.exists() else {}
        t[step] = round(t.get(step, 0.0) + seconds, 2)
        write_json(p, t)

    def timings(self) -> dict:
        p = self.dir / "timings.json"
        return json.loads(p.read_text()) if p.exists() else {}

    # -- feature cache --------------------------------------------------------------------------------
    def feature_path(self, key: str) -> Path:
        return self.features_dir / f"{key}.npy"

    def features(self, keys: list[str]) -> list[np.ndarray]:
        return [np.load(self.feature_path(k)) for k in keys]

    # -- checkpoints ----------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        return sorted(p for p in self.ckpt_dir.glob("step-*") if (p / "meta.json").exists())

    def last_checkpoint(self) -> Path | None:
        c = self.checkpoints()
        return c[-1] if c else None


def prepare(tr: TrainRun) -> dict:
    """Examples and their speaker/source/text split -> split.json (with the overlap check)."""
    ex = tr.examples()
    groups: dict[str, dict] = {}
    for e in ex:
        g = groups.setdefault(e.group, {"split": e.split, "examples": 0})
        g["examples"] += 1
    summary = {s: {"groups": sum(g["split"] == s for g in groups.values()), "examples": sum(e.split == s for e in ex),
                   "by_task": count(e.task for e in ex if e.split == s)} for s in SPLITS}
    overlap = check_no_overlap(ex)
    out = {"split_by": tr.cfg.split_by, "seed": tr.cfg.seed, "data_dir": str(tr.data_dir), "data_digest": tr.data_digest(),
           "summary": summary, "overlap": overlap, "groups": groups,
           "examples": {e.id: e.split for e in ex}}
    write_json(tr.dir / "split.json", out)
    if not tr.split("train"):
        raise TrainError("the split left no training examples (too few speakers/sources)")
    return {"examples": len(ex), **{s: summary[s]["examples"] for s in SPLITS}, "groups": len(groups)}


def compute_features(tr: TrainRun, batch: int = 4) -> dict:
    """Frozen encoder outputs for every audio clip, cached by content (skipped when present)."""
    tr.features_dir.mkdir(parents=True, exist_ok=True)
    audio = tr.audio()
    todo = [k for k in sorted(audio) if not tr.feature_path(k).exists()]
    t0 = time.time()
    if todo:
        enc = load_encoder(tr.cfg)
        for i in range(0, len(todo), batch):
            keys = todo[i:i + batch]
            waves = [decode_audio(audio[k]["audio"], tr.cfg.max_audio_s) for k in keys]
            for k, f in zip(keys, enc.encode(waves)):
                tmp = tr.features_dir / f".{k}.tmp-{os.getpid()}.npy"
                np.save(tmp, f.astype(np.float16))
                tmp.replace(tr.feature_path(k))
        tr.timing("features", time.time() - t0)
    return {"clips": len(audio), "computed": len(todo), "seconds": round(time.time() - t0, 1)}
