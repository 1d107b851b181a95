"""Confidence intervals for the test-split scores: a cluster bootstrap over the split groups (speakers).

Examples of one speaker are not independent (same voice, same recording conditions), so the resampling unit
is the group (speaker / source file / text id), as the split is: each bootstrap replicate draws as many groups
as the test split has, with replacement, and recomputes every system's score on the same draw (paired), so
the interval of a system and that of a control come from the same replicates. A score is a ratio of sums
(accuracy: right / n; corpus WER: errors / reference words; ROUGE-L: sum of F1 / n), recomputed as such.
"""
from __future__ import annotations

import numpy as np

CI_LEVEL = 0.90
N_BOOT = 2000


def row_parts(kind: str, rows: list[dict], system: str) -> tuple[np.ndarray, np.ndarray]:
    """(numerator, denominator) per row of a system's score: the task score is sum(num) / sum(den)."""
    from pipeline.core.text import normalize, wer

    if kind == "label":
        num = [float(p[system] == p["reference"]) for p in rows]
        den = [1.0] * len(rows)
    elif kind == "label_text":
        num = [float(p[f"{system}_class"] == p["reference"]) for p in rows]
        den = [1.0] * len(rows)
    elif kind == "asr":
        den = [float(len(normalize(p["reference"]).split())) for p in rows]
        num = [(wer(p["reference"], p[system] or "<empty>") or 0.0) * d for p, d in zip(rows, den)]
    else:
        from rouge_score import rouge_scorer

        sc = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        num = [sc.score(p["reference"], p[system])["rougeL"].fmeasure for p in rows]
        den = [1.0] * len(rows)
    return np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)


def bootstrap(kind: str, rows: list[dict], systems, seed: int = 0, n_boot: int = N_BOOT, level: float = CI_LEVEL) -> dict:
    """{system: {"score", "ci": [lo, hi]}, "unit": "group", "groups": G, "n_boot": B} for one task's rows,
    the interval being the (1-level)/2 and (1+level)/2 quantiles of the paired cluster-bootstrap replicates."""
    groups = sorted({p["group"] for p in rows})
    gi = {g: i for i, g in enumerate(groups)}
    idx = np.array([gi[p["group"]] for p in rows])
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(groups), size=(n_boot, len(groups)))
    counts = np.stack([np.bincount(d, minlength=len(groups)) for d in draws])  # [B, G] times each group is drawn
    out: dict = {"unit": "group", "groups": len(groups), "n_boot": n_boot, "level": level}
    q = [(1 - level) / 2, (1 + level) / 2]
    for s in systems:
        num, den = row_parts(kind, rows, s)
        gnum, gden = np.bincount(idx, num, len(groups)), np.bincount(idx, den, len(groups))
        rn, rd = counts @ gnum, counts @ gden
        reps = rn / np.maximum(rd, 1e-12)
        out[s] = {"score": round(float(num.sum() / max(den.sum(), 1e-12)), 4),
                  "ci": [round(float(x), 4) for x in np.quantile(reps, q)]}
    return out


def separated(ci: dict, a: str, b: str, higher_is_better: bool) -> bool:
    """True when system a's interval lies wholly on the better side of system b's (no overlap)."""
    lo_a, hi_a = ci[a]["ci"]
    lo_b, hi_b = ci[b]["ci"]
    return lo_a > hi_b if higher_is_better else hi_a < lo_b
