"""Two processes finish one run together (cooperative shard claims, issue 18).

    .venv/bin/python bench/bench_cooperative.py [--files 24]

Makes ``--files`` espeak-ng clips, then runs the no-LLM stages ingest + metadata (one file per shard) on a
fresh output folder twice: with one worker process, and with two worker processes started on the same
``--output-dir`` at once. Models are loaded before the start line, so the times are shard work only.
Every process gets ``--threads`` compute threads (default 1: OpenMP, BLAS, torch), so two processes on two cores
stand for two one-core machines sharing a folder (a process with 2 threads and a second one would share the same
two cores and show nothing). Prints the wall time of each, their ratio (2 workers / 1 worker; ~0.5 is ideal), the
machine's own ceiling for that ratio (a fixed matmul loop run by one process twice, then by two at once), and
checks from ``_work/<stage>/writes.log`` that every shard was written exactly once and by both processes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["ingest", "metadata"]

CHILD = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from pipeline.core.config import load_profile
    from pipeline.run.runner import Run, run_stage, worker
    out, manifest, go, stages = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    import torch
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    p = load_profile("en", input=manifest, shard_size=1, **{"tts.input": None})
    run = Run(p, out)
    for s in stages:
        worker(s, p)
    Path(go + f".ready-{os.getpid()}").touch()
    while not Path(go).exists():
        time.sleep(0.005)
    t0 = time.time()
    for s in stages:
        run_stage(run, s, progress=False)
    print(json.dumps({"pid": os.getpid(), "start": t0, "end": time.time()}))
""")

SPIN = textwrap.dedent("""
    import time, numpy as np
    a = np.random.default_rng(0).random((400, 400), dtype=np.float32)
    t = time.time()
    for _ in range(2000):
        a = a @ a
        a /= np.abs(a).max()
    print(time.time() - t)
""")


def ceiling(threads: int) -> float:
    """This machine's own limit on the ratio: the same fixed compute (a matmul loop) done by one process, then split
    over two at once; 0.5 where the cores are independent, more where they share (SMT siblings, one power budget)."""
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    t0 = time.time()
    subprocess.run([sys.executable, "-c", SPIN], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", SPIN], env=env, check=True, capture_output=True)
    one_by_one = time.time() - t0
    t0 = time.time()
    ps = [subprocess.Popen([sys.executable, "-c", SPIN], env=env, stdout=subprocess.PIPE) for _ in range(2)]
    for p in ps:
        p.communicate()
    return round((time.time() - t0) / one_by_one, 3)


SENTENCES = ["The library opens at nine and closes at five on weekdays.",
             "Please bring a warm jacket because the mountain trail gets cold at night.",
             "Our train to the coast leaves from platform four in twenty minutes.",
             "She planted tomatoes, beans and sunflowers in the garden last spring."]


def one(workers: int, manifest: Path, out: Path, threads: int = 1) -> dict:
    go = out.parent / f"go-{workers}"
    env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    ps = [subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(manifest), str(go), ",".join(STAGES)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(workers)]
    while len(list(out.parent.glob(f"{go.name}.ready-*"))) < workers:
        if any(p.poll() is not None for p in ps):
            raise SystemExit(ps[0].stderr.read()[-3000:])
        time.sleep(0.1)
    go.touch()
    res = []
    for p in ps:
        o, e = p.communicate()
        if p.returncode:
            raise SystemExit(e[-3000:])
        res.append(json.loads(o.strip().splitlines()[-1]))
    wall = max(r["end"] for r in res) - min(r["start"] for r in res)
    writes, by = {}, Counter()
    for s in STAGES:
        lines = [x.split("\t") for x in (out / "en" / "_work" / s / "writes.log").read_text().splitlines()]
        writes[s] = Counter(x[0] for x in lines)
        by.update(x[1] for x in lines)
    n = json.loads((out / "en" / "_work" / "plan.json").read_text())["n_shards"]
    once = all(w == Counter(str(k) for k in range(n)) for w in writes.values())
    return {"workers": workers, "wall_s": round(wall, 2), "shards_per_stage": n, "every_shard_written_once": once,
            "shards_by_process": sorted(by.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--stages", default=",".join(STAGES), help="no-LLM stages to run, in order")
    ap.add_argument("--sentences", type=int, default=4, help="sentences per clip")
    ap.add_argument("--threads", type=int, default=1, help="compute threads per worker process")
    a = ap.parse_args(argv)
    STAGES[:] = a.stages.split(",")
    d = Path(tempfile.mkdtemp(prefix="bench_coop_"))
    rows = []
    for i in range(a.files):
        wav = d / f"c{i:03d}.wav"
        text = " ".join(SENTENCES[(i + j) % 4] for j in range(a.sentences))
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(150 + 5 * (i % 5)), "-w", str(wav), text], check=True)
        rows.append(json.dumps({"path": str(wav)}))
    manifest = d / "manifest.jsonl"
    manifest.write_text("\n".join(rows) + "\n")
    r1 = one(1, manifest, d / "one", a.threads)
    r2 = one(2, manifest, d / "two", a.threads)
    out = {"files": a.files, "stages": list(STAGES), "threads_per_process": a.threads, "one_process": r1, "two_processes": r2,
           "ratio_two_over_one": round(r2["wall_s"] / r1["wall_s"], 3),
           "machine_ceiling_ratio": ceiling(a.threads)}
    print(json.dumps(out, indent=1))
    return 0 if r1["every_shard_written_once"] and r2["every_shard_written_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
