"""LLM judge, as the filtering prompt of the SALM data-generation paper (arXiv 2406.12946).

The instruction and response are shown with the transcript (QA) or the DeSTA2 seed description
(descriptions) and scored 1-5 for groundedness and usefulness as schema-constrained JSON; a row with
either score below ``judge_min_score`` is rejected as ``judge_low``, the scores kept. Transcripts are
data: the judge is told to score, not to obey, text spoken in the clip.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError

from pipeline.backends.llm.base import ChatRequest, LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.prompts import render, template_hash
from pipeline.quality.text_rules import Failure


class JudgeScores(BaseModel):
    groundedness: int = Field(ge=1, le=5)
    usefulness: int = Field(ge=1, le=5)


JUDGE_SCHEMA = {"type": "object", "required": ["groundedness", "usefulness"], "properties": {
    "groundedness": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
    "usefulness": {"type": "integer", "enum": [1, 2, 3, 4, 5]}}}


def parse_judge(raw: str) -> tuple[JudgeScores | None, Failure | None]:
    m = re.search(r"\{.*?\}", raw, re.S)
    try:
        return JudgeScores.model_validate_json(m.group(0) if m else raw), None
    except ValidationError as e:
        return None, ("judge_malformed", f"{e.error_count()} validation error(s): {e.errors()[0]['msg']}")


@dataclass
class Candidate:
    """One generated row on its way through the judge and the dedup filter."""
    id: str
    kind: str  # "qa" | "description"
    context: str  # transcript (qa) or DeSTA2 seed description (description)
    prompt: str
    response: str
    seed: int
    row: dict = field(default_factory=dict)  # the finished instructions row
    scores: JudgeScores | None = None
    judge_raw: str | None = None
    failure: Failure | None = None


class Judge:
    """Scores candidates with an LLM; schema-constrained JSON, bounded retries, greedy by default."""

    def __init__(self, cfg: LLMConfig, engine: LLMEngine):
        self.cfg, self.engine = cfg, engine
        self.prompt_hash = template_hash("judge_system.j2", "judge_user.j2")

    def request(self, c: Candidate, attempt: int) -> ChatRequest:
        system = render("judge_system.j2", kind=c.kind)
        user = render("judge_user.j2", kind=c.kind, context=c.context, prompt=c.prompt, response=c.response)
        return ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                           max_tokens=self.cfg.judge_max_tokens, temperature=self.cfg.judge_temperature,
                           top_p=self.cfg.top_p, seed=c.seed + attempt,
                           json_schema=JUDGE_SCHEMA if self.cfg.structured_output else None)

    def score(self, cands: list[Candidate]) -> None:
        """Sets c.scores (and c.judge_raw) on every candidate, or c.failure after all attempts.
        Requests go in kind order so llama.cpp reuses the shared system-prompt prefix."""
        pending = sorted(cands, key=lambda c: (c.kind, c.id))
        for attempt in range(self.cfg.retries + 1):
            if not pending:
                break
            outs = self.engine.chat([self.request(c, attempt) for c in pending])
            still = []
            for c, raw in zip(pending, outs):
                s, fail = parse_judge(raw)
                c.judge_raw = raw
                if fail is None:
                    c.scores, c.failure = s, None
                else:
                    c.failure = (fail[0], f"{fail[1]} (after {attempt + 1} attempts)")
                    still.append(c)
            pending = still

    def verdict(self, c: Candidate) -> Failure | None:
        if c.scores is None:
            return c.failure or ("judge_malformed", "no judge output")
        t = self.cfg.judge_min_score
        s = c.scores
        if s.groundedness < t or s.usefulness < t:
            return "judge_low", (f"judge scores groundedness {s.groundedness}/5, usefulness {s.usefulness}/5; "
                                 f"threshold {t}: {c.judge_raw.strip()}")
        return None

    def provenance(self, c: Candidate) -> str:
        return json.dumps({"engine": self.engine.name, "model_id": self.engine.model_id, "prompt_hash": self.prompt_hash,
                           "threshold": self.cfg.judge_min_score, "temperature": self.cfg.judge_temperature,
                           "raw": (c.judge_raw or "").strip()}, ensure_ascii=False)


# ---- probability-based judging (issue 14) -----------------------------------------------------------------
# Instead of sampling a 1-5 number, the judge is asked a yes/no question (prompts/judge_yes_no.j2) and the
# score is P("Yes") / (P("Yes") + P("No")) of the first reply token. An engine may offer this itself as
# ``choice_probs(requests, choices) -> list[dict[str, float]]``; for the in-process llama.cpp engine it is read
# from the logits of the last prompt token (no logits_all needed).
YES_NO = "judge_yes_no.j2"


def yes_no_request(c: Candidate) -> ChatRequest:
    user = render(YES_NO, kind=c.kind, context=c.context, prompt=c.prompt, response=c.response)
    return ChatRequest(messages=[{"role": "user", "content": user}], max_tokens=1, temperature=0.0, top_p=1.0, seed=0)


def _llama_choice_probs(llm, requests: list[ChatRequest], choices: tuple[str, ...]) -> list[dict[str, float]]:
    import jinja2
    import numpy as np

    tmpl = jinja2.Environment().from_string(llm.metadata.get("tokenizer.chat_template") or
                                            "{% for m in messages %}{{ m.content }}\n{% endfor %}")
    ids = {w: llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in choices}
    out = []
    for r in requests:
        text = tmpl.render(messages=r.messages, add_generation_prompt=True)
        toks = llm.tokenize(text.encode(), add_bos=False, special=True)
        prefix = 0  # reuse the KV cache of the previous prompt's common prefix
        for a, b in zip(llm._input_ids[: llm.n_tokens], toks[:-1]):
            if a != b:
                break
            prefix += 1
        if not (prefix and llm._ctx.kv_cache_seq_rm(-1, prefix, -1)):
            llm.reset()
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            prefix = 0
        llm.n_tokens = prefix
        llm.eval(toks[prefix:])
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype("float64")
        p = np.exp(logits - logits.max())
        p /= p.sum()
        out.append({w: float(p[i]) for w, i in ids.items()})
    return out


def choice_probs(engine: LLMEngine, requests: list[ChatRequest], choices: tuple[str, ...] = ("Yes", "No")):
    """Probabilities of the first reply token being each of ``choices`` (summed over spellings such as
    " Yes" / "yes"); None when the engine cannot say. In-process llama.cpp: read from the logits; other
    engines: ``engine.complete`` with ``top_logprobs`` (vLLM, OpenAI-compatible servers)."""
    import math

    fn = getattr(engine, "choice_probs", None)
    if fn is not None:
        return fn(requests, choices)
    llm = getattr(engine, "llm", None)
    if llm is not None and hasattr(llm, "_ctx") and hasattr(llm, "tokenize"):
        return _llama_choice_probs(llm, requests, choices)
    if not hasattr(engine, "complete"):
        return None
    from dataclasses import replace

    outs = engine.complete([replace(r, top_logprobs=20) for r in requests])
    res = []
    for c in outs:
        if not c.top_logprobs:
            return None
        first = c.top_logprobs[0]
        res.append({w: sum(math.exp(lp) for t, lp in first.items() if t.strip().lower() == w.lower()) for w in choices})
    return res


def yes_probabilities(engine: LLMEngine, cands: list[Candidate]) -> list[float] | None:
    """P(yes) per candidate (requests sorted by kind so a shared prefix stays in the cache); None when the
    engine offers no token probabilities."""
    order = sorted(range(len(cands)), key=lambda i: (cands[i].kind, cands[i].context))
    probs = choice_probs(engine, [yes_no_request(cands[i]) for i in order])
    if probs is None:
        return None
    out = [0.0] * len(cands)
    for i, p in zip(order, probs):
        out[i] = p["Yes"] / max(1e-12, p["Yes"] + p["No"])
    return out
