"""ASR stage: pseudo-label every utterance of a shard; filtered ones go to rejects with the reason."""
from __future__ import annotations

from .asr import ASRBackend, check, result_columns
from .audio import decode_bytes
from .config import Profile


def transcribe(backend: ASRBackend, rows: list[dict], profile: Profile) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    audios = [decode_bytes(r["audio"]["bytes"])[0] for r in rows]
    results = backend.transcribe_batch(audios, rows[0]["sample_rate"], profile.asr.language)
    kept, rejects = [], []
    for row, res in zip(rows, results):
        cols = result_columns(res, backend, row.get("reference_text"))
        bad = check(res, row["duration_s"], profile.language)
        if bad:
            reason, detail = bad
            rejects.append({"id": row["id"], "stage": "asr", "reason": reason, "detail": detail,
                            "source_path": row["source_path"], "start_s": row["start_s"], "end_s": row["end_s"],
                            "raw": res.text})
        else:
            kept.append({**row, **cols})
    return kept, rejects
