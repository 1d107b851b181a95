"""SALM-style QA: up to ``n_qa`` question/answer pairs per utterance in one schema-constrained JSON reply
(one pair per ``qa_words_per_pair`` words of the transcript, at least one),
grounded in the transcript (the reference when there is one, else the ASR pseudo-label;
``text_source`` says which), deduplicated within the utterance. Empty slots are asked again with a new
seed, a bounded number of times, then rejected as ``qa_<reason>`` with the raw text kept.
Row ids: ``<utterance>-qa-<k>`` (k < the pairs asked of that utterance).
"""
from __future__ import annotations

import json

from pipeline.backends.llm.base import LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.prompts import localized, render, template_hash
from pipeline.core.rows import reject
from pipeline.core.text import normalize, word_count
from pipeline.quality.judge import Candidate
from pipeline.quality.qa import parse_qa_pairs, qa_schema
from pipeline.quality.text_rules import prompt_ngrams
from pipeline.stages.llm.common import chat_request, generate, generated_row, sampling_json, subject
from pipeline.stages.llm.filter import QualityFilter

SEED_OFFSET = 7919  # an utterance's QA seed is its description seed plus this


def pairs_asked(cfg: LLMConfig, transcript: str | None, language: str | None = None) -> int:
    """QA pairs asked of one utterance: one per ``qa_words_per_pair`` words of its transcript, between 1 and ``n_qa``
    (``n_qa`` when there is no transcript: those slots are rejected as qa_no_transcript)."""
    n, per = cfg.n_qa, cfg.qa_words_per_pair
    if per <= 0 or not transcript or n == 0:
        return n
    return max(1, min(n, int(word_count(transcript, language) / per + 0.5)))


class QuestionAnswers:
    """QA requests, rule checks and rows (or rejects) for the items of one shard.

    An item is a dict with ``row``, ``source``, ``transcript``, ``language``, ``seed_description`` and
    ``seed``; ``generate`` adds ``accepted`` = [(QAPair, grounding, attempt, raw)] and ``fails`` =
    [(reason, detail, raw)] to the items that have a transcript."""

    kind = "qa"

    def __init__(self, cfg: LLMConfig, engine: LLMEngine, dataset: str, language: str | None = None):
        self.cfg, self.engine, self.dataset = cfg, engine, dataset
        n = max(1, cfg.n_qa)
        # the profile language's prompt files where they exist (prompts/<lang>/...), else the default ones
        self.tmpl = {t: localized(t, language) for t in ("qa_system.j2", "qa_user.j2")}
        self.prompt_hash = template_hash(*self.tmpl.values())
        self.ngrams = prompt_ngrams(render(self.tmpl["qa_system.j2"], n=n), render(self.tmpl["qa_user.j2"], transcript="", n=n))
        self.filter = QualityFilter(cfg, engine, prompts=(render(self.tmpl["qa_system.j2"], n=n),
                                                          render(self.tmpl["qa_user.j2"], transcript="", n=n)))

    @property
    def retries(self) -> int:
        """Extra attempts for the pairs still missing: ``qa_retries``, else ``retries``."""
        return self.cfg.retries if self.cfg.qa_retries is None else self.cfg.qa_retries

    def request(self, it: dict, k: int, seed: int):
        """The chat request for ``k`` pairs about the item's transcript (system prompt and schema for ``k``)."""
        cfg = self.cfg
        return chat_request(cfg, render(self.tmpl["qa_system.j2"], n=max(1, k)),
                            render(self.tmpl["qa_user.j2"], transcript=it["transcript"], n=k), seed,
                            qa_schema(k) if cfg.structured_output else None, k * cfg.qa_max_tokens_per_pair,
                            cfg.qa_temperature)

    def generate(self, items: list[dict]) -> None:
        """Ask each utterance with a transcript for n QA pairs; keep the pairs that pass the rules and are
        not the same question again; ask again (new seed, bounded) for the pairs still missing."""
        cfg = self.cfg
        items = [it for it in items if it["transcript"]]
        for it in items:
            it["accepted"], it["fails"] = [], []
            it["n"] = pairs_asked(cfg, it["transcript"], it.get("language"))
        pending = list(items)
        for attempt in range(self.retries + 1):
            if not pending:
                break
            # a retry asks only for the pairs still missing (fewer tokens, and the prompt's count is the one wanted)
            want = [it["n"] - len(it["accepted"]) for it in pending]
            outs = generate(self.engine, [self.request(it, k, it["seed"] + attempt) for it, k in zip(pending, want)])
            parsed = []
            for it, k, (raw, _) in zip(pending, want, outs):
                pairs, fail = parse_qa_pairs(raw)
                if fail:
                    it["fails"].append((*fail, raw))
                    continue
                if len(pairs) < k:
                    it["fails"].append(("too_few_pairs", f"{len(pairs)} pair(s) in the reply, {k} asked for", raw))
                parsed.append((it, pairs, raw))
            # the quality gate over every pair of this attempt in one batch (rules, then the QA round trip)
            subs = [subject(it, "qa", f"{it['row']['id']}-qa", qa.question.strip(), qa.answer.strip(), None)
                    for it, pairs, _ in parsed for qa in pairs]
            verdicts = iter(self.filter.evaluate(subs, judge=False))
            for it, pairs, raw in parsed:
                for qa in pairs:
                    v = next(verdicts)
                    if len(it["accepted"]) == it["n"]:
                        continue
                    g = float(v.scores.get("grounding", 0.0))
                    bad = None if v.keep else (v.reason, v.detail)
                    if bad is None:
                        seen = {normalize(a[0].question): k for k, a in enumerate(it["accepted"])}
                        same = {normalize(a[0].answer): k for k, a in enumerate(it["accepted"])}
                        if normalize(qa.question) in seen:
                            bad = ("duplicate", f"same question as {it['row']['id']}-qa-{seen[normalize(qa.question)]}")
                        elif normalize(qa.answer) in same:  # the same fact asked twice in other words
                            bad = ("duplicate", f"same answer as {it['row']['id']}-qa-{same[normalize(qa.answer)]}")
                    if bad:
                        it["fails"].append((*bad, json.dumps(qa.model_dump(), ensure_ascii=False)))
                    else:
                        it["accepted"].append((qa, g, attempt, raw))
            pending = [it for it in pending if len(it["accepted"]) < it["n"]]

    def collect(self, items: list[dict]) -> tuple[list[Candidate], list[dict]]:
        """Judge candidates for the accepted pairs; rejects for the slots left empty (utterances without a
        transcript first, then the others in item order)."""
        cfg, n = self.cfg, self.cfg.n_qa
        cands, rejects = [], []
        for it in items:
            if not it["transcript"]:
                for k in range(n):
                    rejects.append(reject(f"{it['row']['id']}-qa-{k}", it["row"], "llm", "qa_no_transcript",
                                          "qa: no reference or ASR transcript to ground questions in", None))
        for it in items:
            if not it["transcript"]:
                continue
            row = it["row"]
            for k, (pair, g, attempt, raw) in enumerate(it["accepted"]):
                rid = f"{row['id']}-qa-{k}"
                prompt, response = pair.question.strip(), pair.answer.strip()
                r = generated_row(self.engine, self.dataset, rid, row, "qa", prompt, response, it["seed_description"],
                                  it["source"], self.tmpl["qa_user.j2"], self.prompt_hash,
                                  sampling_json(cfg, attempts=attempt + 1, n_qa=it["n"],
                                                max_tokens=it["n"] * cfg.qa_max_tokens_per_pair),
                                  it["seed"] + attempt)
                r["grounding"] = round(g, 3)
                cands.append(Candidate(rid, "qa", it["transcript"], prompt, response, it["seed"] + attempt, r))
            missing = range(len(it["accepted"]), it["n"])
            fails = it["fails"][-len(missing):] if it["fails"] else []
            for j, k in enumerate(missing):
                reason, detail, raw = fails[j] if j < len(fails) else (fails[-1] if fails else
                                                                       ("too_few_pairs", "no pair left", None))
                rejects.append(reject(f"{row['id']}-qa-{k}", row, "llm", f"qa_{reason}",
                                      f"qa: {detail} (after {self.retries + 1} attempts)", raw))
        return cands, rejects
