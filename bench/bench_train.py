"""Speech-LM training on a bigger synthetic corpus: does the adapter learn speaker gender from audio?

Synthesises one sentence per espeak-ng speaker (accent x voice variant, male and female variants),
runs the project's stages ingest -> metadata -> asr on it (LLM/TTS stages skipped: the tasks here are
ASR and gender, derived from the utterances), exports the shards, then trains and scores with
pipeline.train (speaker-disjoint split) and prints metrics + timings.

    python bench/bench_train.py --speakers 40 --steps 120 --out /tmp/bench_train
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
VARIANTS = [("m1", "male"), ("f1", "female"), ("m2", "male"), ("f2", "female"), ("m3", "male"), ("f3", "female"),
            ("m4", "male"), ("f4", "female"), ("m5", "male"), ("f5", "female"), ("m6", "male"), ("m7", "male")]
SENTENCES = [
    "The library opens at nine and closes at five on weekdays.",
    "Please bring a warm jacket because the trail gets cold at night.",
    "Our train to the coast leaves from platform four in twenty minutes.",
    "She planted tomatoes, beans and sunflowers in the garden last spring.",
    "The bakery on the corner sells fresh bread every morning.",
    "We watched the boats sail past the harbour wall at sunset.",
    "My brother fixed the old bicycle with a new chain and tyres.",
    "The museum keeps a map of the city drawn three hundred years ago.",
    "Turn left after the bridge and the station is on your right.",
    "A small dog waited patiently outside the shop for its owner.",
    "The concert was moved indoors because of the heavy rain.",
    "He wrote the shopping list on the back of an envelope.",
]


def synth(out: Path, n: int) -> Path:
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        accent = ACCENTS[(i // len(VARIANTS)) % len(ACCENTS)]
        var, gender = VARIANTS[i % len(VARIANTS)]
        text = SENTENCES[(i * 5) % len(SENTENCES)]
        path = audio / f"s{i:03d}.wav"
        if not path.exists():
            subprocess.run(["espeak-ng", "-v", f"{accent}+{var}", "-s", str(140 + (i * 7) % 40), "-p", str(40 + (i * 11) % 30),
                            "-w", str(path), text], check=True)
        rows.append({"path": f"audio/{path.name}", "text": text, "speaker": f"espeak-{accent}+{var}", "labels": {"gender": gender}})
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out / "manifest.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--speakers", type=int, default=40)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--out", default="/tmp/bench_train")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="train config override (as in python -m pipeline train)")
    a = ap.parse_args()
    from pipeline.core.config import load_profile
    from pipeline.dataset.export import export
    from pipeline.run.runner import Run, run_stage
    from pipeline.train.entry import parse_overrides, run_all

    out = Path(a.out)
    t0 = time.time()
    manifest = synth(out / "corpus", a.speakers)
    overrides = {"train.tasks": ["asr", "labels"], "train.max_steps": a.steps, "train.checkpoint_every": max(1, a.steps // 4),
                 "train.max_new_tokens": 32, **parse_overrides(a.set)}
    profile = load_profile("en", input=str(manifest), **{"shard_size": 8, **overrides})
    profile = profile.model_copy(update={"tts": profile.tts.model_copy(update={"input": None})})  # no TTS rows
    run = Run(profile, out / "data")
    timings = {"synth": round(time.time() - t0, 1)}
    for stage in ("ingest", "metadata", "asr"):
        t = time.time()
        run_stage(run, stage, progress=False)
        timings[stage] = round(time.time() - t, 1)
    for k in run.shard_ids("llm"):
        if not run.part("llm", k).exists():
            run.write_shard("llm", k, [], [])
    export(run)
    res = run_all(profile, str(out / "data"))
    m = json.loads((out / "data" / "en" / "train" / "metrics.json").read_text())
    print(json.dumps({"speakers": a.speakers, "steps": a.steps, "split": m["split"], "tasks": m["tasks"],
                      "timings_s": {**timings, **m["timings_s"]}, "report": res["report"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
