"""Metadata stage: one batched call of the estimator per shard.

The transcript is known here only where the manifest gives ``reference_text``: those rows get their
speaking rate (and text emotion) now; the others get them from ``asr_text`` later
(``pipeline.bins.enrich`` at the end of the ASR stage; export runs it again, a no-op then).
"""
from __future__ import annotations

from .audio import decode_bytes


def annotate(estimator, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    audios = [decode_bytes(r["audio"]["bytes"])[0] for r in rows]
    texts = [r.get("reference_text") for r in rows]
    metas = estimator.estimate_batch(audios, rows[0]["sample_rate"], texts=texts, text_source="reference_text")
    out = []
    for row, meta in zip(rows, metas):
        out.append({**row, **{k: v for k, v in meta.items() if k != "metadata_errors"}})
    return out, []
