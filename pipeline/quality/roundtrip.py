"""QA round-trip consistency (Alberti et al. 2019, "Synthetic QA Corpora Generation with Roundtrip
Consistency"): the generated question is answered again from the transcript alone, greedily, by the
shortest span or NONE; a pair is kept only when the two answers agree (normalised token F1, or one
containing the other), so a question the transcript does not answer, or an answer that does not answer
it, is rejected. One signal among several: the rules in ``pipeline.quality.checks`` run first.
"""
from __future__ import annotations

import re

from pipeline.backends.llm.base import ChatRequest
from pipeline.core.config import LLMConfig
from pipeline.core.prompts import lines, render
from pipeline.quality import lexicon as lx
from pipeline.quality.checks import token_f1
from pipeline.quality.text_rules import Failure

TEMPLATE = "qa_roundtrip.j2"


EXAMPLES = "qa_roundtrip_examples.txt"


def _turn(passage: str, question: str) -> str:
    return f"Passage: {passage}\nQuestion: {question}"


def request(cfg: LLMConfig, transcript: str, question: str) -> ChatRequest:
    """The instruction as the system turn, the few-shot examples as earlier chat turns (a small chat model
    follows them far better than examples inside one user message: on 12 good dev-set questions 10 vs 5
    answered), then the question. Greedy; every request shares the same prefix."""
    msgs = [{"role": "system", "content": render(TEMPLATE)}]
    for line in lines(EXAMPLES):
        passage, q, a = (x.strip() for x in line.split("|"))
        msgs += [{"role": "user", "content": _turn(passage, q)}, {"role": "assistant", "content": a}]
    msgs.append({"role": "user", "content": _turn(transcript, question)})
    return ChatRequest(messages=msgs, max_tokens=cfg.roundtrip_max_tokens, temperature=0.0, top_p=1.0, seed=0)


def clean_answer(raw: str) -> str:
    a = (raw or "").strip().splitlines()[0] if (raw or "").strip() else ""
    a = re.sub(r"^(?:answer\s*:\s*)", "", a, flags=re.I).strip().strip('"').strip()
    return a


def compare(cfg: LLMConfig, generated: str, raw: str, question: str = "") -> tuple[float, Failure | None]:
    """(F1, failure) of the generated answer against the round-trip answer ``raw``. A round-trip reply that
    only repeats the question says nothing either way: no failure."""
    rt = clean_answer(raw)
    if not rt or re.match(r"^\W*none\b", rt, re.I):
        return 0.0, ("unanswerable", f"answered from the transcript alone: {rt or 'nothing'!r}")
    yn = re.match(r"^\W*(yes|no)\b", rt, re.I)
    if yn and lx.AUX_START.search(question.strip()):  # a yes/no question: the same yes or no agrees, what follows
        mine = re.match(r"^\W*(yes|no)\b", generated, re.I)  # in the generated answer is the rules' business
        if mine and mine.group(1).lower() == yn.group(1).lower():
            return 1.0, None
        if mine:
            return 0.0, ("roundtrip_mismatch", f"the transcript answers {rt!r}, the pair {generated!r}")
    rc = set(lx.content_stems(rt))
    if question and rc and rc <= set(lx.content_stems(question)) and not set(lx.content_stems(generated)) <= rc:
        return 0.5, None
    f1 = token_f1(generated, rt)
    g = set(lx.content_stems(generated)) | {f"#{v:g}" for v in lx.numbers(generated)}
    r = set(lx.content_stems(rt)) | {f"#{v:g}" for v in lx.numbers(rt)}
    if g and r and (g <= r or r <= g):
        f1 = max(f1, 0.99)
    if f1 < cfg.roundtrip_min_f1:
        return f1, ("roundtrip_mismatch", f"the transcript answers {rt!r}; token F1 {f1:.2f} < {cfg.roundtrip_min_f1}")
    return f1, None
