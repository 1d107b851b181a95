"""MS MARCO-style QA: JSONL (or a JSON array) of ``{"query_id"|"id", "query", "passages": [{"passage_text",
"is_selected"}] | "passage", "answers": [...]}``; the column-oriented v2.1 JSON is turned into rows by
``pipeline.recipes.text.load.columns_to_rows``."""
from __future__ import annotations

from typing import Any

from pipeline.recipes.text.base import Reject, TextInstruction, text_field

_NO_ANSWER = {"no answer present.", "no answer present", ""}


def parse(records: list[tuple[str, Any]], source: str) -> tuple[list[TextInstruction], list[Reject]]:
    out: list[TextInstruction] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for idx, rec in records:
        rid = f"{source}:{idx}"
        if not isinstance(rec, dict):
            rejects.append(Reject(rid, "not_an_object", f"record is {type(rec).__name__}"))
            continue
        own = rec.get("query_id", rec.get("id"))
        if own is not None:
            rid = f"{source}:{own}"
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "query id already used by an earlier record"))
            continue
        query = text_field(rec.get("query"))
        if not query:
            rejects.append(Reject(rid, "missing_instruction" if query == "" else "bad_type", "query is missing, empty or not a string"))
            continue
        passage = ""
        passages = rec.get("passages")
        if isinstance(passages, list) and passages:
            good = [p for p in passages if isinstance(p, dict) and isinstance(p.get("passage_text"), str)]
            chosen = next((p for p in good if p.get("is_selected") in (1, True, "1")), good[0] if good else None)
            if chosen is None:
                rejects.append(Reject(rid, "bad_type", "passages must be objects with a passage_text string"))
                continue
            passage = chosen["passage_text"].strip()
        elif passages not in (None, []):
            rejects.append(Reject(rid, "bad_type", "passages must be a list"))
            continue
        elif rec.get("passage") is not None:
            passage = text_field(rec.get("passage"))
            if passage is None:
                rejects.append(Reject(rid, "bad_type", "passage must be a string"))
                continue
        answers = rec.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            rejects.append(Reject(rid, "bad_type" if answers is not None else "missing_output",
                                  "answers must be a list of strings"))
            continue
        answers = [a.strip() for a in answers if a.strip().lower() not in _NO_ANSWER]
        if not answers:
            rejects.append(Reject(rid, "no_answer", "no usable answer (empty or 'No Answer Present.')"))
            continue
        seen.add(rid)
        meta: dict[str, Any] = {"format": "marco", "answers": answers}
        if rec.get("query_type") is not None:
            meta["query_type"] = rec["query_type"]
        wfa = rec.get("wellFormedAnswers")
        if isinstance(wfa, list) and wfa:
            meta["well_formed_answers"] = wfa
        out.append(TextInstruction(id=rid, source=source, instruction=query, input=passage, output=answers[0], meta=meta))
    return out, rejects
