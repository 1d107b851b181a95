"""Shard-level stage execution, generic over stages: look the stage up, feed it its shard, write the result.

Models load once per worker process (``worker`` caches one Stage object per stage and profile). Several
processes, on one machine or several sharing the output folder, can run the same command on the same
``--output-dir``: each shard is claimed before it is computed (pipeline.run.claims), so the processes
share the shards and every shard is written once. A shard whose part file is whole is skipped, a part
that is not whole is moved aside and redone, and a claim of a killed process is taken over, so a killed
run resumes where it stopped and never writes a row twice.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from pipeline.core import store
from pipeline.core.config import Profile
from pipeline.run import claims
from pipeline.run.plan import PlanMismatch, Run, RunBusy, previous, stage_class  # noqa: F401 (API)
from pipeline.run.preview import Eta
from pipeline.stages import ORDER
from pipeline.stages.base import in_flight

STAGES = ORDER  # every stage, in run order
POLL_S = 0.25  # how often a process waiting for another one's shard looks again


_workers: dict[str, tuple[str, object]] = {}  # stage -> (profile json, its Stage object) of this process
_workers_lock = threading.Lock()


def worker(stage: str, profile: Profile):
    """The stage object of this process for ``profile`` (models loaded on first use, then kept). One per stage:
    a stage asked for with another profile first closes the one it replaces (a long-lived worker process that
    runs many datasets holds one set of models, not one per run)."""
    key = profile.model_dump_json()
    with _workers_lock:
        held = _workers.get(stage)
        if held is not None and held[0] == key:
            return held[1]
        if held is not None:
            _close(held[1])
        obj = stage_class(stage).from_profile(Profile.model_validate_json(key))
        _workers[stage] = (key, obj)
        return obj


def _close(obj) -> None:
    close = getattr(obj, "close", None)  # optional in the Stage protocol: stages holding a server or a pool
    if close is not None:
        close()


def release_workers() -> None:
    """Close and forget every stage object of this process (the end of an in-process run): a stage holding a
    subprocess (the llm stage's llama-server) stops it now instead of at interpreter exit."""
    with _workers_lock:
        held = list(_workers.values())
        _workers.clear()
    for _, obj in held:
        _close(obj)


_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)


def _inputs(run: Run, stage: str, k: int) -> list:
    """The shard's input; an input part that fails its checksums is moved aside and its shard redone."""
    try:
        return run.inputs(stage, k)
    except store.CorruptPart as e:
        store.quarantine(e.path, f"read by {stage} shard {k}: {e.detail}")
        process_shard(run, previous(stage), k)
        return run.inputs(stage, k)


def process_shard(run: Run, stage: str, k: int, wait: bool = True) -> dict:
    """Make shard ``k`` of ``stage`` done (skipped when it already is). Returns counts.

    The shard is claimed first; when a live process (this machine or another) holds the claim, wait for
    it to finish (``wait=True``, taking over if it dies) or return ``{"busy": holder}`` at once. The
    previous stage's shard ``k`` is made done first, the same way. A process holds one model per stage;
    threads of a thread-pool runner take turns on it (the model libraries are not re-entrant)."""
    prev = previous(stage)
    while True:
        if run.done(stage, k):
            return {"shard": k, "skipped": True}
        if prev and not run.done(prev, k):
            c = process_shard(run, prev, k, wait)
            if "busy" in c:
                return {"shard": k, "busy": c["busy"]}
        claim = run.claim(stage, k)
        if claim is None:
            if not wait:
                return {"shard": k, "busy": run.holder(stage, k) or {}}
            time.sleep(POLL_S)
            continue
        try:
            obj = worker(stage, run.profile)
            # a stage that says it is thread-safe runs several shards at once; others take turns on their models
            with contextlib.nullcontext() if getattr(obj, "thread_safe", False) else _locks[stage]:
                if run.done(stage, k):
                    return {"shard": k, "skipped": True}
                t0 = time.time()
                rows, rejects = obj.process(_inputs(run, stage, k))
                if not claim.mine():  # judged stale and taken over meanwhile: the taker writes it
                    continue
                n = run.write_shard(stage, k, rows, rejects)
            if n is None:
                return {"shard": k, "skipped": True, "lost_race": True}
            return {"shard": k, "rows": n, "rejects": len(rejects), "seconds": round(time.time() - t0, 2)}
        finally:
            claim.release()


def run_stage(run: Run, stage: str, progress: bool = True) -> dict:
    """Run a stage over all its pending shards, with a progress bar: first every shard no other process
    holds, then wait for (or take over) the shards other processes are still working on. A thread-safe stage
    (the llm stage on an engine that batches across calls) has ``shards_in_flight`` shards in work at once."""
    todo = run.pending(stage)
    t0 = time.time()
    n_ids = len(run.shard_ids(stage))
    totals = {"stage": stage, "shards": n_ids, "done_before": n_ids - len(todo), "rows": 0, "rejects": 0, "by_others": 0}
    width = in_flight(stage_class(stage), run.profile) if todo else 1
    with tqdm(total=len(todo), desc=f"{stage:>8}", unit="shard", disable=not progress or not todo) as bar, \
            ThreadPoolExecutor(width, thread_name_prefix=f"{stage}-shard") as pool:
        busy = []
        eta = Eta.start(run, stage, todo) if progress and todo else None  # remaining time by rows (preview.Eta)
        if eta:
            bar.set_postfix(eta=eta.update(None, 0.0))
        for wait, ks in ((False, todo), (True, None)):
            ks = list(ks if ks is not None else busy)
            # at most `width` shards in work: the next one starts when one is written (memory stays flat)
            for k, c in _in_flight(pool, width, ks, lambda k, w=wait: process_shard(run, stage, k, wait=w)):
                if "busy" in c:
                    busy.append(k)
                    continue
                bar.update(1)
                totals["rows"] += c.get("rows", 0)
                totals["rejects"] += c.get("rejects", 0)
                totals["by_others"] += bool(c.get("skipped"))
                bar.set_postfix(rows=totals["rows"], rejects=totals["rejects"],
                                rows_per_s=f"{totals['rows'] / max(time.time() - t0, 1e-6):.2f}",
                                **({"eta": eta.update(k, time.time() - t0)} if eta else {}))
    if todo:
        run.add_timing(stage, time.time() - t0)
    return totals


def _in_flight(pool: ThreadPoolExecutor, width: int, ks: list[int], fn):
    """Yield (k, fn(k)) for every k, in completion order, with at most ``width`` calls running at once
    (width 1: in order, in this thread)."""
    if width <= 1:
        for k in ks:
            yield k, fn(k)
        return
    pending, it = {}, iter(ks)
    for k in it:
        pending[pool.submit(fn, k)] = k
        if len(pending) >= width:
            break
    while pending:
        done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
        for f in done:
            k = pending.pop(f)
            yield k, f.result()
            nxt = next(it, None)
            if nxt is not None:
                pending[pool.submit(fn, nxt)] = nxt


@contextlib.contextmanager
def exclusive(run: Run, step: str, wait: bool = True):
    """Hold the run-wide claim ``step`` (e.g. ``export``) for the block: one process at a time does it;
    the others wait (a dead holder's claim is taken over). With ``wait=False`` raise RunBusy instead."""
    while True:
        c = run.claim(step)
        if c is not None:
            break
        if not wait:
            raise RunBusy(f"{run.dir}: {step} is being done by {claims.describe(run.holder(step))}")
        time.sleep(POLL_S)
    try:
        yield c
    finally:
        c.release()
