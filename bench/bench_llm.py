"""LLM stage benchmarks.

throughput (default): the same requests (the llm stage's shapes: DeSTA2 descriptions, and QA pairs as
schema-constrained JSON), in one process and one run, through
  - the old path: ``llama-cpp-inprocess`` (llama-cpp-python ``create_chat_completion``, one sequence at a time);
  - the new path: ``llama-cpp-batched`` (in process, ``--slots`` sequences per llama_decode step, shared prompt
    prefixes decoded once and copied, a sampler and a JSON grammar per sequence);
  - with ``--server``: ``llama-cpp`` (a private llama-server with ``--slots`` slots, driven by the ``openai``
    client that also talks to ``vllm serve``), the other route, for comparison.
Both answer sets are checked (same count, every JSON answer parses and matches its schema, no empty
description). Also printed: the physical bound, i.e. the weight bytes read per decode step (the GGUF's
tensors; the token-embedding table is looked up, not read, when the model has its own output matrix)
and this machine's measured memory read bandwidth: one sequence cannot decode faster than
bandwidth / bytes, a batch of B sequences shares one read of the weights per step.

    python bench/bench_llm.py [--model embedded:qwen2.5-0.5b-instruct-q4_k_m] [--n 16] [--slots 8] [--server]

The last line is ``llm batched speedup: <x>x (<new> tok/s vs <old> tok/s, <n> requests)`` (completion
tokens per second of wall time). The machine may be shared: the ratio within one run is what counts.

quality: run the llm stage (descriptions, QA, label tasks, rule filters, judge, dedup) over the
utterance shards of a run (``<out>/<lang>/_work/asr/part-*.parquet``) and print rows per task,
reject reasons and judge pass rates.

    python bench/bench_llm.py quality --asr-dir data/en/_work/asr --profile en [--backend llama-cpp-inprocess]
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.backends.llm import load_llm  # noqa: E402
from pipeline.backends.llm.base import ChatRequest  # noqa: E402
from pipeline.core.config import LLMConfig  # noqa: E402
from pipeline.core.model_cache import resolve  # noqa: E402
from pipeline.core.prompts import lines, render  # noqa: E402
from pipeline.quality.qa import qa_schema  # noqa: E402
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


def qa_requests(n: int, n_qa: int, max_tokens_per_pair: int) -> list[ChatRequest]:
    system = render("qa_system.j2", n=n_qa)
    schema = qa_schema(n_qa)
    return [ChatRequest(messages=[{"role": "system", "content": system},
                                  {"role": "user", "content": render("qa_user.j2", transcript=TRANSCRIPTS[i % len(TRANSCRIPTS)], n=n_qa)}],
                        max_tokens=n_qa * max_tokens_per_pair, temperature=0.7, top_p=0.9, seed=2000 + i, json_schema=schema)
            for i in range(n)]


def check_outputs(reqs: list[ChatRequest], outs: list[str]) -> dict:
    """Same count; JSON answers parse and match their schema; free-text answers are not empty."""
    import jsonschema

    assert len(outs) == len(reqs), (len(outs), len(reqs))
    bad = collections.Counter()
    for r, o in zip(reqs, outs):
        if r.json_schema is None:
            bad["empty"] += not o.strip()
            continue
        try:
            jsonschema.validate(json.loads(o), r.json_schema)
        except json.JSONDecodeError:
            bad["json_invalid"] += 1
        except jsonschema.ValidationError:
            bad["schema_invalid"] += 1
    return {k: v for k, v in bad.items() if v}


def measure(engine, reqs) -> dict:
    before = engine.usage.snapshot()
    t0 = time.perf_counter()
    outs = engine.chat(reqs)
    dt = time.perf_counter() - t0
    after = engine.usage.snapshot()
    d = {k: after[k] - before[k] for k in after}
    return {"rows": len(reqs), "s": dt, "rows_s": len(reqs) / dt, "tok_s": d["completion_tokens"] / dt,
            "completion_tokens": d["completion_tokens"], "prompt_tokens": d["prompt_tokens"],
            "cached_prompt_tokens": d["cached_prompt_tokens"], "truncated": d["truncated"],
            "invalid": check_outputs(reqs, outs)}


def weight_bytes_per_token(path: str) -> tuple[int, int]:
    """(bytes of all tensors, bytes read per decode step): the token-embedding table is only looked up
    (one row) when the model has a separate output matrix; tied embeddings are read as the output layer."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(path).tensors}
    total = sum(tensors.values())
    per_step = total - (tensors.get("token_embd.weight", 0) if "output.weight" in tensors else 0)
    return total, per_step


def memory_read_bandwidth(threads: int, mib: int = 512, repeats: int = 5) -> float:
    """Best-of-``repeats`` read bandwidth in bytes/s: ``threads`` threads each summing their part of a
    ``mib`` MiB array (numpy releases the GIL in the reduction)."""
    import numpy as np

    a = np.ones(mib * 2**20 // 8, dtype=np.float64)
    parts = np.array_split(a, threads)
    best = float("inf")
    for _ in range(repeats):
        ts = [threading.Thread(target=np.sum, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


def throughput(a) -> None:
    reqs = description_requests(a.n // 2, a.max_tokens) + qa_requests(a.n - a.n // 2, a.n_qa, a.qa_tokens_per_pair)
    cfg = LLMConfig(model=a.model, n_threads=a.threads, slots=a.slots, max_tokens=a.max_tokens, server_fallback=False)
    path = resolve(a.model)
    total_b, step_b = weight_bytes_per_token(path)
    bw = memory_read_bandwidth(a.threads)
    results = []

    old = load_llm(cfg.model_copy(update={"backend": "llama-cpp-inprocess"}))
    old.chat(reqs[:1])  # warm up (page the weights in)
    results.append(("llama-cpp-inprocess", "sequential", measure(old, reqs)))
    print(results[-1], flush=True)
    del old

    new = load_llm(cfg.model_copy(update={"backend": "llama-cpp-batched"}))
    try:
        new.chat(reqs[:1])
        results.append(("llama-cpp-batched", f"{a.slots} slots", measure(new, reqs)))
        print(results[-1], flush=True)
    finally:
        new.close()
    del new

    if a.server:  # route a of the issue, for the record: llama-server with slots, through the openai client
        srv = load_llm(cfg.model_copy(update={"backend": "llama-cpp"}))
        try:
            srv.chat(reqs[:1])
            results.append(("llama-cpp (llama-server)", f"{a.slots} slots", measure(srv, reqs)))
            print(results[-1], flush=True)
            if a.single:  # the same server, one request in flight: how much is batching, how much the server
                srv.concurrency = 1
                results.append(("llama-cpp (llama-server)", "1 in flight", measure(srv, reqs)))
                print(results[-1], flush=True)
        finally:
            srv.close()

    print(f"\nmodel {a.model} ({os.path.getsize(path) / 1e6:.0f} MB), {len(reqs)} requests "
          f"({a.n // 2} descriptions, {a.n - a.n // 2} QA JSON x{a.n_qa}), n_threads {a.threads}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (machine may be shared)")
    print(f"{'engine':26s} {'mode':12s} {'rows':>5s} {'seconds':>8s} {'rows/s':>7s} {'tok/s':>7s} {'compl tok':>9s} "
          f"{'prompt tok':>10s} {'cached':>7s} {'cut':>4s}  invalid")
    for name, mode, r in results:
        print(f"{name:26s} {mode:12s} {r['rows']:5d} {r['s']:8.1f} {r['rows_s']:7.3f} {r['tok_s']:7.1f} "
              f"{r['completion_tokens']:9d} {r['prompt_tokens']:10d} {r['cached_prompt_tokens']:7d} {r['truncated']:4d}  "
              f"{r['invalid'] or 'none'}")
    bound = bw / step_b
    old_r, new_r = results[0][2], results[1][2]
    print(f"\nphysical bound: {step_b / 1e6:.0f} MB of weights read per decode step ({total_b / 1e6:.0f} MB of tensors), "
          f"measured read bandwidth {bw / 1e9:.1f} GB/s ({a.threads} threads) => one sequence <= {bound:.0f} tok/s; "
          f"a step of B sequences reads the weights once, so up to B x that until compute-bound")
    print(f"old path {old_r['tok_s']:.1f} tok/s = {old_r['tok_s'] / bound:.0%} of the one-sequence bound; "
          f"new path {new_r['tok_s']:.1f} tok/s aggregate = {new_r['tok_s'] / bound:.0%} of it "
          f"({new_r['tok_s'] / a.slots:.1f} tok/s per slot)")
    for name, _, r in results:
        if r["invalid"]:
            print(f"warning: {name}: invalid answers {r['invalid']}")
    print(f"llm batched speedup: {new_r['tok_s'] / old_r['tok_s']:.2f}x ({new_r['tok_s']:.1f} tok/s vs "
          f"{old_r['tok_s']:.1f} tok/s, {len(reqs)} requests)")


def quality(a) -> None:
    import pyarrow.parquet as pq

    from pipeline.stages.llm.stage import LlmStage

    cfg = LLMConfig(model=a.model, backend=a.backend, n_threads=a.threads, slots=a.slots, n_qa=a.n_qa,
                    max_tokens=a.max_tokens, retries=a.retries)
    if a.profile:  # the llm section of a profile (prompts' language, checks, sampling), model/backend/slots from here
        from pipeline.core.config import load_profile

        prof = load_profile(a.profile)
        cfg = prof.llm.model_copy(update={"model": a.model, "backend": a.backend, "slots": a.slots})
    eng = load_llm(cfg)
    gen = LlmStage(cfg, eng, "bench", language=prof.language if a.profile else None)  # noqa: F821 (prof set with a.profile)
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
    print(f"\n{cfg.backend}: {n_utts} utterances in {dt:.0f} s ({dt / max(n_utts, 1):.1f} s per utterance); LLM requests {u['requests']}, "
          f"completion tokens {u['completion_tokens']} ({u['completion_tokens'] / dt:.1f} tok/s), prompt tokens {u['prompt_tokens']} "
          f"({u['cached_prompt_tokens']} from shared prefixes)")
    if hasattr(eng, "steps"):
        st = eng.steps
        print(f"decode steps {st['steps']}: {st['sequences'] / max(st['steps'], 1):.1f} sequences per step on average "
              f"(of {cfg.slots} slots), {st['prompt_tokens']} prompt tokens read")
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
    ap.add_argument("--model", default="embedded:qwen2.5-0.5b-instruct-q4_k_m")
    ap.add_argument("--n", type=int, default=16, help="throughput: requests (half descriptions, half QA JSON)")
    ap.add_argument("--max-tokens", type=int, default=120, help="description max_tokens (the en profile's)")
    ap.add_argument("--qa-tokens-per-pair", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slots", type=int, default=16, help="sequences decoded together by the new path (the profiles' llm.slots)")
    ap.add_argument("--server", action="store_true", help="throughput: also run llama-server (llm.backend llama-cpp)")
    ap.add_argument("--single", action="store_true", help="throughput, with --server: also 1 request in flight")
    ap.add_argument("--asr-dir", help="quality: folder of utterance shards (…/_work/asr)")
    ap.add_argument("--backend", default="llama-cpp-batched", help="quality: llm.backend")
    ap.add_argument("--profile", help="quality: take the llm section of this profile (e.g. en)")
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
