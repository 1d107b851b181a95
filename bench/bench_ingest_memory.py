"""Long recordings in bounded memory: peak RSS of the ingest stage on a generated long file (issue 18).

    .venv/bin/python bench/bench_ingest_memory.py                 # a 3-hour file (default)
    .venv/bin/python bench/bench_ingest_memory.py --minutes 30 --reference

Makes a WAV of espeak-ng sentences with pauses of varied length (one speaker, like a lecture), then, each
in a fresh process so that peak RSS is that of the work alone:

1. ``windowed``: the real path, ``Run`` + ``run_stage(run, "ingest")`` on a one-file manifest: the plan
   cuts the file in spans of ``ingest.long_file_span_s`` and each span is decoded by seeking.
2. ``--reference``: one decode of the whole file and one VAD pass over it (``whole_file_segments``), the
   memory the old whole-file ingest needed and the segments the windowed path must reproduce.

Prints peak RSS (MB) of each, seconds, segment counts and the largest boundary difference between the
two segmentations (VAD boundary tolerance). Exits 1 when the windowed peak is 1.5 GB or more.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = 1536

MAKE = textwrap.dedent("""
    import subprocess, sys, numpy as np, soundfile as sf
    minutes, out, tmp = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    texts = ["The meeting will start after lunch on the second floor.", "Please remember to bring your notes and a pen.",
             "The weather today is cloudy with a chance of rain in the evening.", "We have three new members joining the team next week.",
             "After the break we will look at the results of the second experiment in more detail."]
    clips = []
    for i, t in enumerate(texts):
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", f"{tmp}/t{i}.wav", t], check=True)
        x, sr = sf.read(f"{tmp}/t{i}.wav", dtype="float32"); clips.append(x)
    rng = np.random.default_rng(0)
    total = int(minutes * 60 * sr)
    with sf.SoundFile(out, "w", sr, 1, subtype="PCM_16") as f:
        n = 0
        while n < total:  # written in pieces: the generator itself stays small
            x = clips[rng.integers(len(clips))] * rng.uniform(0.5, 1.0)
            pause = np.zeros(int(sr * rng.choice([0.4, 0.7, 1.2, 2.5, 6.0], p=[.3, .3, .2, .15, .05])), dtype=np.float32)
            chunk = np.concatenate([x, pause])[: total - n]
            f.write(chunk); n += chunk.size
""")

WINDOWED = textwrap.dedent("""
    import json, resource, sys, time
    from pipeline.core.config import load_profile
    from pipeline.core import store
    from pipeline.run.runner import Run, run_stage
    manifest, out = sys.argv[1], sys.argv[2]
    t0 = time.time()
    p = load_profile("en", input=manifest, **{"tts.input": None})
    run = Run(p, out)
    totals = run_stage(run, "ingest", progress=False)
    segs = []
    for k in run.shard_ids("ingest"):
        t = store.read(run.part("ingest", k), columns=["start_s", "end_s"]).to_pylist()
        segs.append([(r["start_s"], r["end_s"]) for r in t])
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.time() - t0,
                      "shards": totals["shards"], "rows": totals["rows"], "rejects": totals["rejects"],
                      "span_s": p.ingest.long_file_span_s, "segments": segs}))
""")

REFERENCE = textwrap.dedent("""
    import json, resource, sys, time
    from pipeline.core.audio import load
    from pipeline.core.config import IngestConfig
    from pipeline.stages.ingest import IngestStage, whole_file_segments
    path, n_spans = sys.argv[1], int(sys.argv[2])
    t0 = time.time()
    st = IngestStage(IngestConfig())
    segs = whole_file_segments(load(path, 16000), 16000, st.vad, n_spans, st.cfg.max_duration_s)
    segs = [[s for s in w if s[1] - s[0] >= st.cfg.min_duration_s] for w in segs]
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": time.time() - t0,
                      "segments": segs}))
""")


def _py(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def compare(a: list[list], b: list[list]) -> dict:
    """Segments of the windowed path vs the reference: counts, and the largest start/end difference
    over segments matched in order (spans of equal count only)."""
    fa, fb = [s for w in a for s in w], [s for w in b for s in w]
    worst = max((max(abs(x[0] - y[0]), abs(x[1] - y[1])) for x, y in zip(fa, fb)), default=0.0) if len(fa) == len(fb) else None
    return {"windowed_segments": len(fa), "reference_segments": len(fb), "max_boundary_diff_s": worst}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=180.0)
    ap.add_argument("--reference", action="store_true", help="also decode the whole file once (needs ~4 bytes/sample x 2 of RAM)")
    ap.add_argument("--keep", help="folder to keep the generated file and output in")
    a = ap.parse_args(argv)
    work = Path(a.keep or tempfile.mkdtemp(prefix="bench_ingest_mem_"))
    work.mkdir(parents=True, exist_ok=True)
    wav = work / f"long_{a.minutes:g}min.wav"
    if not wav.exists():
        subprocess.run([sys.executable, "-c", MAKE, str(a.minutes), str(wav), str(work)], check=True)
    manifest = work / "manifest.jsonl"
    manifest.write_text(json.dumps({"path": str(wav)}) + "\n")
    win = _py(WINDOWED, str(manifest), str(work / "out"))
    out = {"minutes": a.minutes, "file_mb": round(wav.stat().st_size / 2**20, 1),
           "windowed": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in win.items() if k != "segments"}}
    if a.reference:
        ref = _py(REFERENCE, str(wav), str(win["shards"]))
        out["reference_whole_file"] = {k: round(v, 1) for k, v in ref.items() if k != "segments"}
        out["segments"] = compare(win["segments"], ref["segments"])
    out["limit_mb"] = LIMIT_MB
    out["ok"] = win["peak_rss_mb"] < LIMIT_MB
    print(json.dumps(out, indent=1))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
