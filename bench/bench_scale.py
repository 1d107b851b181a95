"""Scale simulation (issue 20): per-shard overhead, discovery, export, manifest and report at 10^4 .. 10^6 sources.

    .venv/bin/python bench/bench_scale.py                       # 10^4, 10^5, 10^6 sources
    .venv/bin/python bench/bench_scale.py --sizes 10000 100000  # a quicker pair

Each size runs in a fresh subprocess (its own peak memory): a JSONL manifest of N synthetic sources (paths to
files that do not exist: nothing is decoded, no model runs), the plan written by ``Run`` (streaming discovery into
the chunked source table), a no-op stage that writes one utterance row per source as the ingest shard (1 % of the
transcripts repeated in another shard, for the dataset-wide dedup), then ``export`` of that stage (dedup,
streaming compaction, accounting, manifest, card), the manifest again alone, and the HTML report.

Per-shard overhead is measured on ``--probe`` shards spread over the plan, each with a cold chunk cache:
``plan read`` = ``Run(..., attach=True)`` + ``run.sources(k)`` (what every shard task does), ``cache key`` =
flows.dataset.shard_cache_key (what Prefect calls per task). The growth exponent of a quantity between two
sizes is log(t2 / t1) / log(N2 / N1): about 0 is flat, about 1 linear. Results go to bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one(n: int, work: Path, shard_size: int, probe: int) -> dict:
    import pyarrow as pa  # noqa: F401

    from flows.dataset import shard_cache_key, task_groups
    from pipeline.core.config import load_profile
    from pipeline.dataset import export as ex
    from pipeline.run import sources as st
    from pipeline.run.plan import Run

    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "m.jsonl"
    import random

    rng = random.Random(1)
    vocab = [w for w in Path(__file__).read_text().split() if w.isalpha() and len(w) > 3]  # words to make sentences of
    texts = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(n)]
    with open(manifest, "w") as f:
        for i in range(n):
            f.write(json.dumps({"path": f"clips/{i // 1000:04d}/c{i:07d}.wav", "text": texts[i], "speaker": f"spk{i % 97}"}) + "\n")
    p = load_profile("en", input=str(manifest), shard_size=shard_size, **{"tts.input": None})
    out = work / "out"
    r = {"sources": n, "shard_size": shard_size}
    t0 = time.perf_counter()
    run = Run(p, out)
    r["discovery_s"] = time.perf_counter() - t0
    r["shards"] = run.plan.n_shards
    r["plan_json_bytes"] = (run.work / "plan.json").stat().st_size
    t0 = time.perf_counter()
    Run(p, out)  # a re-run: discovery again, nothing new
    r["rediscovery_s"] = time.perf_counter() - t0

    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, np.float32), 16000, format="WAV", subtype="PCM_16")  # 0.1 s: tiny audio
    wav = buf.getvalue()
    # no-op stage: one utterance row per source, written as the ingest shard (1 % twins of a row 7 shards back)
    t0 = time.perf_counter()
    for k in range(run.plan.n_shards):
        rows = []
        for s in run.sources(k):
            i = int(s.rel.rsplit("c", 1)[1].split(".")[0])
            text = s.text if i % 100 or i < 7 * shard_size else texts[i - 7 * shard_size]  # a twin 7 shards back
            rows.append({"id": f"{s.source_id}-0", "source_id": s.source_id, "source_path": s.rel, "segment_index": 0,
                         "audio": {"bytes": wav, "path": s.rel}, "start_s": 0.0, "end_s": 0.1, "sample_rate": 16000, "duration_s": 0.1, "speaker": s.speaker,
                         "reference_text": text, "labels_json": "{}"})
        run.write_shard("ingest", k, rows, [])
    r["noop_stage_s"] = time.perf_counter() - t0

    ks = sorted({int(round(x * (run.plan.n_shards - 1) / max(probe - 1, 1))) for x in range(probe)})
    reads, keys = [], []
    for k in ks:
        st._chunk.cache_clear()
        t0 = time.perf_counter()
        a = Run(p, out, attach=True)
        a.sources(k)
        reads.append(time.perf_counter() - t0)
        st._chunk.cache_clear()
        t0 = time.perf_counter()
        shard_cache_key(None, {"profile": p, "output_dir": str(out), "stage": "ingest", "k": k})
        keys.append(time.perf_counter() - t0)
    r["plan_read_ms"] = 1000 * sorted(reads)[len(reads) // 2]
    r["cache_key_ms"] = 1000 * sorted(keys)[len(keys) // 2]
    r["prefect_tasks"] = len(task_groups(list(range(run.plan.n_shards)), p))

    t0 = time.perf_counter()
    run = Run(p, out)
    m = ex.export(run, stages=("ingest",))
    r["export_s"] = time.perf_counter() - t0
    r["final_parts"] = {t: len(v["files"]) for t, v in m["tables"].items()}
    r["rows"] = {t: v["rows"] for t, v in m["tables"].items()}
    r["dedup_dropped"] = m["reject_reasons"].get("dedup:dataset_duplicate", 0)
    t0 = time.perf_counter()
    ex.write_manifest(run, ("ingest",))
    r["manifest_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        from pipeline.dataset.report import write_report

        write_report(run.dir)
        r["report_s"] = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 (reported, not hidden)
        r["report_s"], r["report_error"] = None, f"{type(e).__name__}: {e}"[:200]
    r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return r


def exponent(a: dict, b: dict, key: str) -> float | None:
    if not a.get(key) or not b.get(key):
        return None
    return round(math.log(b[key] / a[key]) / math.log(b["sources"] / a["sources"]), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--probe", type=int, default=200)
    ap.add_argument("--work", default="/tmp/bench_scale")
    ap.add_argument("--keep", action="store_true", help="keep the run folders (to look at them)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, Path(a.work) / str(a.one), a.shard_size, a.probe)))
        return
    results = []
    for n in a.sizes:
        subprocess.run(["rm", "-rf", str(Path(a.work) / str(n))], check=True)
        t0 = time.time()
        cp = subprocess.run([sys.executable, __file__, "--one", str(n), "--work", a.work, "--shard-size", str(a.shard_size),
                             "--probe", str(a.probe)], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if cp.returncode:
            sys.exit(f"size {n} failed:\n{cp.stderr[-3000:]}")
        r = json.loads(cp.stdout.strip().splitlines()[-1])
        r["wall_s"] = time.time() - t0
        results.append(r)
        print(f"N={n:>8} shards={r['shards']:>6} plan.json={r['plan_json_bytes']}B plan read={r['plan_read_ms']:.2f} ms "
              f"cache key={r['cache_key_ms']:.2f} ms discovery={r['discovery_s']:.1f}s rediscovery={r['rediscovery_s']:.1f}s "
              f"no-op stage={r['noop_stage_s']:.1f}s export={r['export_s']:.1f}s manifest={r['manifest_s']:.2f}s "
              f"report={r['report_s'] if r['report_s'] is None else round(r['report_s'], 1)}s parts={r['final_parts']} "
              f"dedup dropped={r['dedup_dropped']} tasks={r['prefect_tasks']} peak={r['peak_rss_mb']:.0f} MB", flush=True)
        if not a.keep:
            subprocess.run(["rm", "-rf", str(Path(a.work) / str(n))], check=True)
    keys = ["plan_read_ms", "cache_key_ms", "discovery_s", "noop_stage_s", "export_s", "manifest_s", "report_s", "peak_rss_mb"]
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        print(f"\ngrowth exponents {lo['sources']} -> {hi['sources']} (0 flat, 1 linear):")
        for k in keys:
            print(f"  {k:>14}: {exponent(lo, hi, k)}")
        for k in ("plan_read_ms", "cache_key_ms"):
            ratio = hi[k] / lo[k]
            print(f"  per-shard {k} ratio {hi['sources']}/{lo['sources']}: {ratio:.2f} ({'flat: within 2x' if ratio <= 2 else 'NOT flat'})")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
