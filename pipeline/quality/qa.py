"""QA pairs: the reply models and JSON schema, parsing (salvaging complete pairs of a cut reply),
grounding in the transcript, and the rules one pair must pass."""
from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field, ValidationError

from pipeline.core.config import LLMConfig
from pipeline.core.text import normalize, tokens, word_count
from pipeline.quality.question_types_i18n import fold, function_words
from pipeline.quality.text_rules import LEAK, REFUSAL, Failure, language_mismatch, leaked_prompt

STOP = set("a an the and or but of to in on at for with is are was were be been it this that these those i you he she we they my your his her our their what which who how do does did not no yes so as by from".split())


def grounded(answer: str, transcript: str, language: str | None = None) -> float:
    """Share of the answer's content words (characters for ja, zh, ...) that occur in the transcript."""
    fw = function_words(language)
    ans = [w for w in tokens(answer, language) if w not in STOP and not (fw and fold(w) in fw)]
    if not ans:
        return 0.0
    tr = set(tokens(transcript, language))
    return sum(w in tr for w in ans) / len(ans)


class QAPair(BaseModel):
    question: str = Field(min_length=8, max_length=300)
    answer: str = Field(min_length=1, max_length=300)


class QAPairs(BaseModel):
    pairs: list[QAPair] = Field(min_length=1)


QA_PAIR_FIELDS = {"question": {"type": "string"}, "answer": {"type": "string"}}


def qa_schema(n: int) -> dict:
    """JSON schema of a QA reply with exactly n pairs (grammar / structured outputs)."""
    return {"type": "object", "required": ["pairs"], "properties": {"pairs": {
        "type": "array", "minItems": max(1, n), "maxItems": max(1, n),
        "items": {"type": "object", "required": ["question", "answer"], "properties": QA_PAIR_FIELDS}}}}


_PAIR = re.compile(r'\{\s*"question"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"answer"\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}', re.S)


def parse_qa_pairs(raw: str) -> tuple[list[QAPair], Failure | None]:
    """All QA pairs in a reply. Output cut off by max_tokens keeps its complete pairs; a reply with no
    valid pair is ``malformed_json``."""
    m = re.search(r"\{.*\}", raw, re.S)
    try:
        return QAPairs.model_validate_json(m.group(0) if m else raw).pairs, None
    except ValidationError as e:
        err = ("malformed_json", f"{e.error_count()} validation error(s): {e.errors()[0]['msg']}")
    pairs = []
    for q, a in _PAIR.findall(raw):  # salvage complete pairs (truncated list, or one bare pair object)
        try:
            pairs.append(QAPair(question=json.loads(f'"{q}"'), answer=json.loads(f'"{a}"')))
        except (ValidationError, json.JSONDecodeError):
            continue
    return (pairs, None) if pairs else ([], err)


def check_qa(qa: QAPair, transcript: str, cfg: LLMConfig | None = None, ngrams: frozenset = frozenset(),
             language: str | None = None) -> tuple[float, Failure | None]:
    """Rules for one QA pair; returns (grounding, failure)."""
    cfg = cfg or LLMConfig()
    text = qa.question + " " + qa.answer
    g = grounded(qa.answer, transcript, language)
    if REFUSAL.search(qa.answer) or REFUSAL.search(qa.question):
        return g, ("refusal", "refusal in QA pair")
    if LEAK.search(text):
        return g, ("prompt_leak", "prompt text leaked into QA pair")
    leak = leaked_prompt(text, ngrams)
    if leak:
        return g, leak
    n = word_count(qa.answer, language)
    if n > cfg.qa_max_answer_words:
        return g, ("too_long", f"answer has {n} words > {cfg.qa_max_answer_words}")
    if normalize(qa.answer) and normalize(qa.answer) == normalize(qa.question):
        return g, ("answer_repeats_question", "the answer only repeats the question")
    if g < cfg.qa_min_grounding:
        return g, ("ungrounded", f"only {g:.0%} of the answer's content words occur in the transcript")
    if cfg.language_check:
        bad = language_mismatch(text, language)
        if bad:
            return g, bad
    return g, None


def parse_qa(raw: str, transcript: str, cfg: LLMConfig | None = None) -> tuple[QAPair | None, Failure | None]:
    """One QA pair (the first) from a reply, checked by the rules."""
    pairs, fail = parse_qa_pairs(raw)
    if fail:
        return None, fail
    _, fail = check_qa(pairs[0], transcript, cfg)
    return (None, fail) if fail else (pairs[0], None)
