"""Quality gate on a labelled candidate set (default bench/data/filter_dev.jsonl: hand-written, hand-labelled).

Runs the same checks as the llm stage and `python -m pipeline filter` (pipeline.stages.llm.filter) and prints,
per task and per reject reason: candidates, kept, precision of kept rows (share labelled good), recall of good
rows (share of good rows kept); and the judge's ROC AUC against the labels (probability-based P(yes) and the
sampled 1-5 scores), computed on every candidate, not only on those the rules keep.

    .venv/bin/python bench/bench_filter.py [--data FILE] [--rules-only] [--no-judge] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.core.config import load_profile  # noqa: E402
from pipeline.stages.llm.filter import QualityFilter, filter_config, read_candidates  # noqa: E402


def auc(scores: list[float], labels: list[bool]) -> float | None:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def table(rows, labels, verdicts, task=None):
    idx = [i for i, r in enumerate(rows) if task in (None, r.task)]
    kept = [i for i in idx if verdicts[i].keep]
    good = [i for i in idx if labels[i]]
    tp = sum(labels[i] for i in kept)
    prec = tp / len(kept) if kept else float("nan")
    rec = tp / len(good) if good else float("nan")
    return len(idx), len(good), len(kept), prec, rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "bench/data/filter_dev.jsonl"))
    ap.add_argument("--profile", default="en")
    ap.add_argument("--rules-only", action="store_true", help="no LLM: rules only (no round trip, no judge)")
    ap.add_argument("--no-judge", action="store_true", help="skip the judge AUC measurement")
    ap.add_argument("--sampled-judge", action="store_true", help="also measure the sampled 1-5 judge (slow: ~40 "
                    "generated tokens per candidate)")
    ap.add_argument("--json", help="write the numbers here")
    ap.add_argument("--errors", action="store_true", help="also print every candidate the gate got wrong")
    ap.add_argument("--threads", type=int, help="llm.n_threads override (1 is faster on an oversubscribed machine)")
    a = ap.parse_args(argv)

    profile = load_profile(a.profile)
    cfg = filter_config(profile)
    if a.threads:
        cfg = cfg.model_copy(update={"n_threads": a.threads})
    lines = [json.loads(l) for l in open(a.data, encoding="utf-8") if l.strip()]
    labels_by_id = {l["id"]: l["label"] == "good" for l in lines}
    failure = {l["id"]: l.get("failure") or "" for l in lines}
    subjects, bad = read_candidates(Path(a.data))
    rows = [s for _, s in subjects]
    labels = [labels_by_id[s.id] for s in rows]
    engine = None
    if not a.rules_only:
        from pipeline.backends.llm import load_llm
        engine = load_llm(cfg)
    qf = QualityFilter(cfg, engine)
    t0 = time.time()
    verdicts = qf.evaluate(rows, judge=False)
    t_gate = time.time() - t0
    out: dict = {"data": a.data, "candidates": len(rows), "malformed_lines": len(bad),
                 "roundtrip": bool(engine and cfg.roundtrip), "judge_in_gate": False, "seconds": round(t_gate, 1)}
    print(f"{len(rows)} candidates from {a.data} ({len(bad)} malformed lines); gate: rules"
          f"{' + QA round trip' if engine and cfg.roundtrip else ''}, {t_gate:.1f} s\n")
    print(f"{'task':<12} {'n':>4} {'good':>5} {'kept':>5} {'precision':>9} {'recall':>7}")
    for task in (None, "description", "qa"):
        n, g, k, p, r = table(rows, labels, verdicts, task)
        print(f"{task or 'all':<12} {n:>4} {g:>5} {k:>5} {p:>9.3f} {r:>7.3f}")
        out[task or "all"] = {"n": n, "good": g, "kept": k, "precision": round(p, 4), "recall": round(r, 4)}

    print(f"\n{'reason':<24} {'rejected':>8} {'of them good':>12}   (labelled failure types caught)")
    by_reason = defaultdict(list)
    for i, v in enumerate(verdicts):
        if not v.keep:
            by_reason[v.reason].append(i)
    out["reasons"] = {}
    for reason, ids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        goods = sum(labels[i] for i in ids)
        types = Counter(failure[rows[i].id] or "GOOD" for i in ids)
        print(f"{reason:<24} {len(ids):>8} {goods:>12}   {dict(types.most_common(6))}")
        out["reasons"][reason] = {"rejected": len(ids), "good_rejected": goods}
    missed = Counter(failure[rows[i].id] for i, v in enumerate(verdicts) if v.keep and not labels[i])
    print(f"\nbad rows kept, by labelled failure type: {dict(missed.most_common())}")
    out["bad_kept_by_failure"] = dict(missed)

    if engine is not None and not a.no_judge:
        print("\njudge ROC AUC against the labels (all candidates; P(yes) from the first reply token):")
        out["judge_auc"] = {}
        for scoring in ("probability", "sampled") if a.sampled_judge else ("probability",):
            qf.cfg = cfg.model_copy(update={"judge_scoring": scoring})
            t0 = time.time()
            sc = qf.judge_scores(rows)
            dt = time.time() - t0
            res = {}
            for task in (None, "description", "qa"):
                idx = [i for i, r in enumerate(rows) if task in (None, r.task)]
                res[task or "all"] = auc([sc[i] for i in idx], [labels[i] for i in idx])
            fmt = lambda x: "n/a" if x is None else f"{x:.3f}"
            print(f"  {scoring:<12} all {fmt(res['all'])}  description {fmt(res['description'])}  qa {fmt(res['qa'])}"
                  f"  ({dt:.1f} s, {dt / len(rows):.2f} s per candidate)")
            out["judge_auc"][scoring] = {k: (None if v is None else round(v, 4)) for k, v in res.items()}
    if a.errors:
        print("\ngate errors (label, kept?, reason: detail | prompt -> response):")
        for s, ok, v in zip(rows, labels, verdicts):
            if v.keep != ok:
                print(f"  {'good' if ok else 'bad '} {'kept' if v.keep else 'cut '} {s.id} [{failure[s.id]}] "
                      f"{v.reason}: {v.detail} | {s.prompt} -> {s.response}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
