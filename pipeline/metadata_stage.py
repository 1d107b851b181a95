"""Metadata stage: one batched call of the estimator per shard."""
from __future__ import annotations

from .audio import decode_bytes


def annotate(estimator, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    audios = [decode_bytes(r["audio"]["bytes"])[0] for r in rows]
    metas = estimator.estimate_batch(audios, rows[0]["sample_rate"])
    out = []
    for row, meta in zip(rows, metas):
        out.append({**row, **{k: v for k, v in meta.items() if k != "metadata_errors"}})
    return out, []
