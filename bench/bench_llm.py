"""LLM stage benchmarks.

throughput (default): rows/s and completion tokens/s for the same requests sent as one batch vs one
request at a time, on the same engine:
  - llama-cpp in process: a "batch" is served sequentially (one sequence at a time), so the two
    should match; the difference is the reused KV-cache prefix between requests of one kind.
  - openai against ``python -m llama_cpp.server`` (started here on 127.0.0.1, same GGUF):
    concurrency 1 vs N requests in flight.

    python bench/bench_llm.py [--model embedded:smollm2-135m-instruct-q4_1] [--n 8] [--max-tokens 48]

quality: run the llm stage (descriptions, QA, label tasks, rule filters, judge, dedup) over the
utterance shards of a run (``<out>/<lang>/_work/asr/part-*.parquet``) and print rows per task,
reject reasons and judge pass rates.

    python bench/bench_llm.py quality --asr-dir data/en/_work/asr [--model ...] [--n-qa 3]
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.backends.llm import load_llm  # noqa: E402
from pipeline.backends.llm.base import ChatRequest  # noqa: E402
from pipeline.backends.llm.llama_server import local_llama_server  # noqa: E402
from pipeline.core.config import LLMConfig  # noqa: E402
from pipeline.core.prompts import lines, render  # noqa: E402
from pipeline.stages.llm.seed import seed_description  # noqa: E402

TRANSCRIPTS = [
    "The museum opens at nine in the morning and closes at six on weekdays.",
    "Please bring a warm jacket because the mountain trail gets cold at night.",
    "Our train to the coast leaves from platform four in twenty minutes.",
    "She planted tomatoes, beans and sunflowers in the garden last spring.",
    "The library closes early on Sundays, so return your books on Saturday.",
    "Turn left at the second traffic light and the bakery is on your right.",
    "The kettle is boiling, and there are fresh scones on the kitchen table.",
    "Our flight was delayed by two hours because of a storm over the coast.",
]


def description_requests(n: int, max_tokens: int) -> list[ChatRequest]:
    system = render("desta_system.j2")
    qs = lines("description_questions.txt")
    reqs = []
    for i in range(n):
        t = TRANSCRIPTS[i % len(TRANSCRIPTS)]
        row = {"duration_s": 4.0 + i % 3, "gender": "female" if i % 2 else "male", "pitch_mean_hz": 180.0, "snr_db": 25.0}
        user = render("desta_user.j2", seed_description=seed_description(row, t), question=qs[i % len(qs)])
        reqs.append(ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                                max_tokens=max_tokens, temperature=0.7, top_p=0.9, seed=1000 + i))
    return reqs


def measure(engine, reqs, batched: bool) -> dict:
    before = engine.usage.snapshot()
    t0 = time.perf_counter()
    if batched:
        engine.chat(reqs)
    else:
        for r in reqs:
            engine.chat([r])
    dt = time.perf_counter() - t0
    after = engine.usage.snapshot()
    comp = after["completion_tokens"] - before["completion_tokens"]
    prompt = after["prompt_tokens"] - before["prompt_tokens"]
    return {"rows": len(reqs), "s": dt, "rows_s": len(reqs) / dt, "tok_s": comp / dt, "completion_tokens": comp,
            "prompt_tokens": prompt}


def throughput(a) -> None:
    reqs = description_requests(a.n, a.max_tokens)
    results = []
    cfg = LLMConfig(model=a.model, n_threads=a.threads, max_tokens=a.max_tokens)
    eng = load_llm(cfg)
    eng.chat(reqs[:1])  # warm up (page in the weights)
    results.append(("llama-cpp", "one at a time", measure(eng, reqs, batched=False)))
    print(results[-1], flush=True)
    results.append(("llama-cpp", f"batch of {len(reqs)}", measure(eng, reqs, batched=True)))
    print(results[-1], flush=True)
    del eng
    with local_llama_server(a.model, a.threads) as base:
        for conc in (1, a.concurrency):
            eng = load_llm(cfg.model_copy(update={"backend": "openai", "base_url": base, "concurrency": conc}))
            if conc == 1:
                eng.chat(reqs[:1])
            results.append(("openai (llama_cpp.server)", f"concurrency {conc}", measure(eng, reqs, batched=True)))
            print(results[-1], flush=True)
    print(f"\nmodel {a.model}, {a.n} description requests, max_tokens {a.max_tokens}, n_threads {a.threads}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'engine':28s} {'mode':16s} {'rows':>5s} {'seconds':>8s} {'rows/s':>7s} {'tok/s':>7s} {'compl tok':>9s} {'prompt tok':>10s}")
    for eng_name, mode, r in results:
        print(f"{eng_name:28s} {mode:16s} {r['rows']:5d} {r['s']:8.1f} {r['rows_s']:7.3f} {r['tok_s']:7.1f} "
              f"{r['completion_tokens']:9d} {r['prompt_tokens']:10d}")


def quality(a) -> None:
    import pyarrow.parquet as pq

    from pipeline.stages.llm.stage import LlmStage

    cfg = LLMConfig(model=a.model, n_threads=a.threads, n_qa=a.n_qa, max_tokens=a.max_tokens, retries=a.retries)
    eng = load_llm(cfg)
    gen = LlmStage(cfg, eng, "bench")
    rows_by_task, rejects, n_utts = collections.Counter(), [], 0
    kept = []
    t0 = time.perf_counter()
    for f in sorted(glob.glob(os.path.join(a.asr_dir, "part-*.parquet")))[: a.shards or None]:
        utts = pq.read_table(f).to_pylist()
        n_utts += len(utts)
        out, rej = gen.process(utts)
        kept += out
        rejects += rej
        rows_by_task.update(r["task"] for r in out)
        print(f"{Path(f).name}: {len(utts)} utterances -> {len(out)} rows, {len(rej)} rejects "
              f"({time.perf_counter() - t0:.0f} s): {dict(collections.Counter(r['reason'] for r in rej))}", flush=True)
    dt = time.perf_counter() - t0
    u = eng.usage.snapshot()
    print(f"\n{n_utts} utterances in {dt:.0f} s ({n_utts / dt:.3f} utt/s); LLM requests {u['requests']}, "
          f"completion tokens {u['completion_tokens']} ({u['completion_tokens'] / dt:.1f} tok/s), prompt tokens {u['prompt_tokens']}")
    print("rows per task:", dict(sorted(rows_by_task.items())))
    print("rejects:", dict(collections.Counter(r["reason"] for r in rejects).most_common()))
    judged = [r for r in kept if r.get("judge_groundedness") is not None]
    low = [r for r in rejects if r["reason"] == "judge_low"]
    for kind in ("description", "qa"):
        k = sum(r["task"] == kind for r in judged)
        lo = sum(f"-{kind}-" in r["id"] for r in low)
        dup = sum(f"-{kind}-" in r["id"] and r["reason"] == "near_duplicate" for r in rejects)
        total = k + lo + dup
        print(f"judge {kind:12s}: passed {k + dup}/{total} ({(k + dup) / max(total, 1):.0%}), judge_low {lo}, "
              f"later near_duplicate {dup}")
    scores = collections.Counter((r["judge_groundedness"], r["judge_usefulness"]) for r in judged)
    print("kept (groundedness, usefulness):", dict(sorted(scores.items())))
    if a.dump:
        Path(a.dump).write_text(json.dumps({"rows": [{k: v for k, v in r.items() if k not in ("audio", "messages")} for r in kept],
                                            "rejects": rejects}, indent=1, ensure_ascii=False, default=str))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="throughput", choices=["throughput", "quality"])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct-q4_1")
    ap.add_argument("--n", type=int, default=8, help="requests (throughput)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--asr-dir", help="quality: folder of utterance shards (…/_work/asr)")
    ap.add_argument("--n-qa", type=int, default=3)
    ap.add_argument("--retries", type=int, default=2)
    ap.add_argument("--dump", help="quality: write kept rows and rejects as JSON here")
    ap.add_argument("--shards", type=int, default=0, help="quality: stop after this many shards (0: all)")
    a = ap.parse_args()
    if a.mode == "quality":
        if not a.asr_dir:
            ap.error("quality needs --asr-dir")
        quality(a)
    else:
        throughput(a)


if __name__ == "__main__":
    main()
