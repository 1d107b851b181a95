"""Shard-level stage execution, generic over stages: look the stage up, feed it its shard, write the result.

Models load once per worker process (``worker`` caches one Stage object per stage and profile); every
shard write is atomic and a shard whose part file exists is skipped, so a killed run resumes where it
stopped and never writes a row twice.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from functools import lru_cache

from tqdm.auto import tqdm

from pipeline.core.config import Profile
from pipeline.run.plan import PlanMismatch, Run, previous, stage_class  # noqa: F401 (API)
from pipeline.stages import ORDER

STAGES = ORDER  # every stage, in run order


@lru_cache(maxsize=None)
def _worker(stage: str, profile_json: str):
    return stage_class(stage).from_profile(Profile.model_validate_json(profile_json))


def worker(stage: str, profile: Profile):
    """The stage object of this process for ``profile`` (models loaded on first use, then kept)."""
    return _worker(stage, profile.model_dump_json())


_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)


def process_shard(run: Run, stage: str, k: int) -> dict:
    """Run one stage on one shard (skipped when already done). Returns counts.

    A process holds one model per stage; threads of a thread-pool runner take turns on it (the
    model libraries are not re-entrant). Processes (dask workers) each have their own models."""
    with _locks[stage]:
        if run.part(stage, k).exists():
            return {"shard": k, "skipped": True}
        t0 = time.time()
        rows, rejects = worker(stage, run.profile).process(run.inputs(stage, k))
        n = run.write_shard(stage, k, rows, rejects)
        return {"shard": k, "rows": n, "rejects": len(rejects), "seconds": round(time.time() - t0, 2)}


def run_stage(run: Run, stage: str, progress: bool = True) -> dict:
    """Run a stage over all its pending shards, with a progress bar."""
    todo = run.pending(stage)
    t0 = time.time()
    totals = {"stage": stage, "shards": len(run.shard_ids(stage)), "done_before": len(run.shard_ids(stage)) - len(todo), "rows": 0, "rejects": 0}
    with tqdm(todo, desc=f"{stage:>8}", unit="shard", disable=not progress or not todo) as bar:
        for k in bar:
            c = process_shard(run, stage, k)
            totals["rows"] += c.get("rows", 0)
            totals["rejects"] += c.get("rejects", 0)
            bar.set_postfix(rows=totals["rows"], rejects=totals["rejects"],
                            rows_per_s=f"{totals['rows'] / max(time.time() - t0, 1e-6):.2f}")
    if todo:
        run.add_timing(stage, time.time() - t0)
    return totals
