"""Stanford Alpaca: a JSON array (or JSONL) of ``{"instruction", "input", "output"}`` (optional ``id``)."""
from __future__ import annotations

from typing import Any

from pipeline.recipes.text.base import Reject, TextInstruction, text_field


def parse(records: list[tuple[str, Any]], source: str) -> tuple[list[TextInstruction], list[Reject]]:
    out: list[TextInstruction] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for idx, rec in records:
        rid = f"{source}:{idx}"
        if not isinstance(rec, dict):
            rejects.append(Reject(rid, "not_an_object", f"record is {type(rec).__name__}"))
            continue
        if rec.get("id") is not None:
            rid = f"{source}:{rec['id']}"
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "id already used by an earlier record"))
            continue
        fields = {k: text_field(rec.get(k)) for k in ("instruction", "input", "output")}
        bad = [k for k, v in fields.items() if v is None]
        if bad:
            rejects.append(Reject(rid, "bad_type", f"field(s) {', '.join(bad)} must be strings"))
            continue
        if not fields["instruction"]:
            rejects.append(Reject(rid, "missing_instruction", "instruction is missing or empty"))
            continue
        if not fields["output"]:
            rejects.append(Reject(rid, "missing_output", "output is missing or empty"))
            continue
        seen.add(rid)
        meta = {k: v for k, v in rec.items() if k not in ("id", "instruction", "input", "output")}
        out.append(TextInstruction(id=rid, source=source, **fields, meta={"format": "alpaca", **meta}))
    return out, rejects
