"""DeSTA2 descriptions: the seed description "[00:00-00:05] transcript (Gender: ..., ...)" is given to
the LLM with an instruction drawn from ``prompts/description_questions.txt`` (the paper's "What can
you hear from the audio?" for about half of the utterances). Replies that fail the rules
(the quality gate, ``pipeline.stages.llm.filter``) are asked again with a new seed, a bounded number
of times, then rejected as ``description_<reason>`` with the raw text kept. Row id: ``<utterance>-description-0``.
"""
from __future__ import annotations

import random

from pipeline.backends.llm.base import ChatRequest, LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.prompts import localized, render, template_hash
from pipeline.core.rows import reject
from pipeline.quality.judge import Candidate
from pipeline.quality.text_rules import Failure, prompt_ngrams
from pipeline.stages.llm.common import chat_request, generate, generated_row, sampling_json, subject
from pipeline.stages.llm.filter import QualityFilter

TEMPLATES = ("desta_system.j2", "desta_seed.j2", "desta_user.j2", "description_questions.txt")
QUESTIONS = "description_questions.txt"


def pick_question(seed: int, questions: tuple[str, ...]) -> str:
    """The first question (the paper's) for about half of the utterances, else one drawn from the pool."""
    return questions[0] if random.Random(seed).random() < 0.5 else random.Random(seed + 1).choice(questions)


def voice_phrase(seed_description: str) -> str:
    """The seed's attributes in words a description can use as they are ("a man with a low voice, at a normal
    pace, in a clean recording"). The small model copies the wording it is shown (few-shot examples included),
    so it is shown the right wording for this clip; the checks hold it to the same attributes."""
    from pipeline.quality.checks import parse_seed

    a = parse_seed(seed_description).attrs
    who = {"male": "a man", "female": "a woman"}.get(a.get("gender", ""), "a speaker")
    pitch = a.get("pitch", "")
    parts = [who + (" with a low voice" if "low" in pitch else " with a high voice" if "high" in pitch else "")]
    speed = a.get("speaking speed", "")
    parts.append("speaking slowly" if "slow" in speed else "speaking quickly" if "fast" in speed else
                 "at a normal pace" if speed else "")
    emo = a.get("emotion", "")
    if emo and "from the words" not in emo:
        parts.append(f"sounding {emo}")
    q = a.get("snr", "").split(" (")[0]
    parts.append({"clean": "in a clean recording", "fairly clean": "in a fairly clean recording",
                  "noisy": "over background noise", "very noisy": "over heavy background noise"}.get(q, ""))
    return ", ".join(p for p in parts if p)


class Descriptions:
    """Description requests, rule checks and rows (or rejects) for the items of one shard.

    An item is a dict with ``row``, ``source``, ``transcript``, ``language``, ``seed_description``,
    ``seed`` and ``question``; ``generate`` adds ``result`` and ``attempts`` or ``failure``."""

    kind = "description"

    def __init__(self, cfg: LLMConfig, engine: LLMEngine, dataset: str, language: str | None = None):
        self.cfg, self.engine, self.dataset = cfg, engine, dataset
        # the profile language's prompt files where they exist (prompts/<lang>/...), else the default ones
        self.tmpl = {n: localized(n, language) for n in TEMPLATES}
        self.prompt_hash = template_hash(*self.tmpl.values())
        self.ngrams = prompt_ngrams(render(self.tmpl["desta_system.j2"]),
                                    render(self.tmpl["desta_user.j2"], seed_description="", question="", voice=""))
        self.filter = QualityFilter(cfg, engine, prompts=(render(self.tmpl["desta_system.j2"]),
                                                          render(self.tmpl["desta_user.j2"], seed_description="", question="", voice="")))

    def request(self, system: str, it: dict, seed: int) -> ChatRequest:
        user = render(self.tmpl["desta_user.j2"], seed_description=it["seed_description"], question=it["question"],
                      voice=voice_phrase(it["seed_description"]))
        return chat_request(self.cfg, system, user, seed, temperature=self.cfg.description_temperature)

    def check(self, outs: list[tuple[str, str | None]], items: list[dict]) -> list[Failure | None]:
        """The quality gate (pipeline.stages.llm.filter: the same checks as ``python -m pipeline filter``)."""
        subs = [subject(it, "description", f"{it['row']['id']}-description-0", it["question"], raw.strip(), fin)
                for it, (raw, fin) in zip(items, outs)]
        return [None if v.keep else (v.reason, v.detail) for v in self.filter.evaluate(subs, judge=False)]

    def generate(self, items: list[dict]) -> None:
        """Generate for every item, retrying failures with a new seed up to cfg.retries times.
        Sets item['result'] on success or item['failure'] = (reason, detail, raw)."""
        system = render(self.tmpl["desta_system.j2"])
        pending = list(items)
        for attempt in range(self.cfg.retries + 1):
            if not pending:
                break
            outs = generate(self.engine, [self.request(system, it, it["seed"] + attempt) for it in pending])
            still = []
            for it, (raw, _), fail in zip(pending, outs, self.check(outs, pending)):
                if fail is None:
                    it["result"], it["attempts"] = raw.strip(), attempt + 1
                else:
                    it["failure"] = (*fail, raw)
                    still.append(it)
            pending = still

    def collect(self, items: list[dict]) -> tuple[list[Candidate], list[dict]]:
        """Judge candidates for the generated descriptions, rejects for the others."""
        cfg = self.cfg
        cands, rejects = [], []
        for it in items:
            row = it["row"]
            rid = f"{row['id']}-description-0"
            if "result" not in it:
                reason, detail, raw = it["failure"]
                rejects.append(reject(rid, row, "llm", f"description_{reason}",
                                      f"description: {detail} (after {cfg.retries + 1} attempts)", raw))
                continue
            prompt, response = it["question"], it["result"]
            seed = it["seed"] + it["attempts"] - 1
            r = generated_row(self.engine, self.dataset, rid, row, "description", prompt, response,
                              it["seed_description"], it["source"], self.tmpl["desta_user.j2"], self.prompt_hash,
                              sampling_json(cfg, attempts=it["attempts"], question_pool=self.tmpl[QUESTIONS]), seed)
            cands.append(Candidate(rid, "description", it["seed_description"], prompt, response, seed, r))
        return cands, rejects
