"""A worker process for the run tests: ``python -m tests.run.child OUT MANIFEST MODE [GO_FILE]``.

Runs the ingest and metadata stages of a one-file-per-shard run on ``OUT``. MODE:
- ``plain``: load the models, wait for GO_FILE to exist (so that several children start together), run.
- ``kill-in-write``: SIGKILL this process half-way through writing the ingest part of shard 1 (a torn
  temp file and a claim of a dead process are left behind).
- ``kill-in-process``: SIGKILL this process while its stage computes metadata shard 0 (claim held).
Prints one JSON line with the stage totals.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def profile(manifest: str):
    from pipeline.core.config import load_profile

    # export.part_rows=1: one final part per shard with rows (the fault tests tear and remove single parts)
    return load_profile("en", input=manifest, shard_size=1, **{"tts.input": None, "export.part_rows": 1})


def main(out: str, manifest: str, mode: str, go: str | None = None) -> None:
    from pipeline.core import store
    from pipeline.run import runner
    from pipeline.run.runner import Run, run_stage, worker

    p = profile(manifest)
    run = Run(p, out)
    for stage in ("ingest", "metadata"):
        worker(stage, p)  # models loaded before the start line
    if mode == "kill-in-write":
        real = store.pq.write_table

        def torn(table, where, **kw):
            real(table, where, **kw)
            if "ingest" in str(where) and ".part-00001.parquet" in str(where):
                with open(where, "r+b") as f:
                    f.truncate(os.path.getsize(where) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        store.pq.write_table = torn
    if mode == "kill-in-process":
        real_worker = runner.worker

        def dying(stage, prof):
            st = real_worker(stage, prof)
            if stage == "metadata":
                class Dying:
                    def process(self, rows):
                        os.kill(os.getpid(), signal.SIGKILL)
                return Dying()
            return st

        runner.worker = dying
    print("ready", flush=True)  # plan made, models loaded, no claim held
    if go:
        while not Path(go).exists():
            time.sleep(0.01)
    t0 = time.time()
    totals = [run_stage(run, s, progress=False) for s in ("ingest", "metadata")]
    print(json.dumps({"pid": os.getpid(), "seconds": time.time() - t0, "totals": totals}))


if __name__ == "__main__":
    main(*sys.argv[1:])
