"""ASR stage: pseudo-label every utterance of a shard in batches; filtered ones go to rejects with the reason."""
from __future__ import annotations

from .asr import ASRBackend, check, result_columns
from .audio import decode_bytes
from .config import Profile


def transcribe(backend: ASRBackend, rows: list[dict], profile: Profile) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    decoded = [decode_bytes(r["audio"]["bytes"]) for r in rows]
    rates = {sr for _, sr in decoded}
    if len(rates) == 1:
        results = backend.transcribe_batch([a for a, _ in decoded], rates.pop(), profile.asr.language)
    else:  # mixed sample rates (not produced by ingest): one batch per rate
        results = [None] * len(rows)
        for sr in rates:
            idx = [i for i, (_, s) in enumerate(decoded) if s == sr]
            for i, r in zip(idx, backend.transcribe_batch([decoded[i][0] for i in idx], sr, profile.asr.language)):
                results[i] = r
    kept, rejects = [], []
    for row, res in zip(rows, results):
        cols = result_columns(res, backend, row.get("reference_text"))
        bad = check(res, row["duration_s"], profile.language, profile.asr)
        if bad:
            reason, detail = bad
            rejects.append({"id": row["id"], "stage": "asr", "reason": reason, "detail": detail,
                            "source_path": row["source_path"], "start_s": row["start_s"], "end_s": row["end_s"],
                            "raw": res.text})
        else:
            kept.append({**row, **cols})
    # what the transcript makes known (language, speaking rate, text emotion) before the LLM stage sees the rows
    from .bins import enrich

    return enrich(kept, profile.metadata), rejects
