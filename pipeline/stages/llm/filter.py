"""The quality gate of generated rows: one code path for the llm stage and ``python -m pipeline filter``.

``QualityFilter.evaluate(subjects)`` runs, cheapest first and each only on what is still kept:
1. the rules of ``pipeline.quality.checks`` (ASR confidence, length, refusal, truncation, repetition,
   prompt leaks by pattern and by sentence similarity, language, first person / obeying the transcript,
   consistency with every seed attribute, invented numbers / names / times / unheard things, empty
   descriptions; for QA: malformed and yes/no questions, questions about the listener or containing their
   answer, answer type, grounding, extractive span);
2. the QA round trip (``pipeline.quality.roundtrip``), one batched request per surviving QA pair;
3. the LLM judge when the profile turns it on (``llm.judge``): probability of "Yes" from token
   log-probs (``llm.judge_scoring: probability``), or the sampled 1-5 scores.

The ``filter`` command reads candidates as JSONL, one object a line: ``id``, ``task`` ("description" |
"qa"), ``transcript``, ``seed_description``, ``prompt``, ``response``; optional ``finish_reason``
("length" = cut at max_tokens), ``text_source`` ("asr" | "reference"), ``asr_avg_logprob``, ``language``;
other keys are ignored. It writes one verdict a line: ``{"id", "keep", "reason", "detail", "scores"}``.
A line that is not such an object gets ``keep: false, reason: "malformed_input"`` with the error, and is
reported on stderr; the run goes on.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.backends.llm.base import LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.prompts import render
from pipeline.quality import roundtrip
from pipeline.quality.checks import Subject, example_words, prompt_sentences, rule_check
from pipeline.quality.judge import Candidate, Judge, yes_probabilities


class CandidateLine(BaseModel):
    """One line of the filter command's input."""
    model_config = ConfigDict(extra="ignore")
    id: str
    task: Literal["description", "qa"]
    transcript: str
    seed_description: str = ""
    prompt: str
    response: str
    finish_reason: str | None = None
    text_source: str | None = None
    asr_avg_logprob: float | None = None
    language: str | None = None


@dataclass
class Verdict:
    id: str
    keep: bool
    reason: str | None = None
    detail: str | None = None
    scores: dict = field(default_factory=dict)


def generation_prompts() -> tuple[str, ...]:
    """The fixed wording of the generation prompts (what must not surface in a response)."""
    return (render("desta_system.j2"), render("desta_user.j2", seed_description="", question="", voice=""),
            render("qa_system.j2", n=3), render("qa_user.j2", transcript="", n=3))


class QualityFilter:
    """Rules, QA round trip and (optionally) the judge over a batch of candidates."""

    def __init__(self, cfg: LLMConfig, engine: LLMEngine | None = None, judge_engine: LLMEngine | None = None,
                 prompts: tuple[str, ...] = ()):
        """``prompts``: the wording of other generation prompts (e.g. a language's own files) whose sentences
        must not surface either; the default English ones are always included."""
        self.cfg, self.engine = cfg, engine
        self.judge_engine = judge_engine or engine
        self.sentences = prompt_sentences(*generation_prompts(), *prompts)
        self.examples = example_words(*generation_prompts(), *prompts)  # few-shot words that must not be copied
        self._roundtrip: dict[tuple[str, str], str] = {}  # (transcript, question) -> the round-trip reply

    def evaluate(self, subjects: list[Subject], judge: bool | None = None) -> list[Verdict]:
        cfg = self.cfg
        verdicts = [Verdict(s.id, True, scores=s.scores) for s in subjects]
        for s, v in zip(subjects, verdicts):
            f = rule_check(s, cfg, self.sentences, self.examples)
            if f:
                v.keep, v.reason, v.detail = False, *f
        live = [i for i, v in enumerate(verdicts) if v.keep and subjects[i].task == "qa"]
        if cfg.roundtrip and live and self.engine is not None:
            # sorted by transcript: the requests of one utterance share their prompt prefix
            # (a question asked again, e.g. on a retry, is answered from the cache: never ask the model twice)
            live.sort(key=lambda i: (subjects[i].transcript, subjects[i].prompt))
            keys = [(subjects[i].transcript, subjects[i].prompt) for i in live]
            if len(self._roundtrip) > 20000:  # bounded: a long run keeps only recent shards' answers
                self._roundtrip.clear()
            known = {k: self._roundtrip[k] for k in keys if k in self._roundtrip}  # this call's own copy: another
            todo = list(dict.fromkeys(k for k in keys if k not in known))   # thread may clear the cache meanwhile
            if todo:
                for k, raw in zip(todo, self.engine.chat([roundtrip.request(cfg, *k) for k in todo])):
                    self._roundtrip[k] = known[k] = raw
            for i, k in zip(live, keys):
                raw = known[k]
                f1, f = roundtrip.compare(cfg, subjects[i].response, raw, subjects[i].prompt)
                verdicts[i].scores.update(roundtrip_f1=round(f1, 3), roundtrip_answer=roundtrip.clean_answer(raw))
                if f:
                    verdicts[i].keep, verdicts[i].reason, verdicts[i].detail = False, *f
        if (cfg.judge if judge is None else judge) and self.judge_engine is not None:
            self._judge(subjects, verdicts)
        return verdicts

    def judge_scores(self, subjects: list[Subject]) -> list[float] | None:
        """The judge's score in [0, 1] for each subject (P(yes), or the sampled scores' mean / 5)."""
        cands = [Candidate(s.id, s.task, s.transcript if s.task == "qa" else s.seed_description, s.prompt, s.response,
                           self.cfg.seed) for s in subjects]
        if self.cfg.judge_scoring == "probability":
            probs = yes_probabilities(self.judge_engine, cands)
            if probs is not None:
                return probs
        j = Judge(self.cfg, self.judge_engine)
        j.score(cands)
        return [((c.scores.groundedness + c.scores.usefulness) / 10) if c.scores else 0.0 for c in cands]

    def _judge(self, subjects: list[Subject], verdicts: list[Verdict]) -> None:
        live = [i for i, v in enumerate(verdicts) if v.keep]
        if not live:
            return
        scores = self.judge_scores([subjects[i] for i in live])
        t = self.cfg.judge_min_prob if self.cfg.judge_scoring == "probability" else self.cfg.judge_min_score / 5
        for i, sc in zip(live, scores):
            verdicts[i].scores["judge"] = round(sc, 4)
            if sc < t:
                verdicts[i].keep, verdicts[i].reason = False, "judge_low"
                verdicts[i].detail = f"judge score {sc:.2f} < {t:.2f} ({self.cfg.judge_scoring})"


# ---- the filter command ------------------------------------------------------------------------------------
def read_candidates(path: Path) -> tuple[list[Subject], list[Verdict]]:
    """Subjects of the well-formed lines, verdicts (malformed_input) for the others, in file order."""
    subjects, bad = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = None
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError(f"a JSON {type(obj).__name__}, not an object")
                c = CandidateLine.model_validate(obj)
            except (ValueError, ValidationError) as e:
                rid = obj["id"] if isinstance(obj, dict) and isinstance(obj.get("id"), str) else f"line-{n}"
                msg = e.errors()[0] if isinstance(e, ValidationError) else None
                detail = (f"line {n}: {'.'.join(map(str, msg['loc']))}: {msg['msg']}" if msg else f"line {n}: {e}")
                bad.append((n, Verdict(rid, False, "malformed_input", detail)))
                continue
            subjects.append((n, Subject(c.id, c.task, c.transcript, c.seed_description, c.prompt, c.response,
                                        c.finish_reason, c.text_source, c.asr_avg_logprob, c.language)))
    return subjects, bad


def run_filter(input_path: str | Path, output_path: str | Path, cfg: LLMConfig, engine: LLMEngine | None,
               batch_size: int = 32, progress: bool = True) -> dict:
    """Verdicts for every line of ``input_path`` into ``output_path`` (written atomically); a summary."""
    from tqdm import tqdm

    subjects, bad = read_candidates(Path(input_path))
    for n, v in bad:
        print(f"filter: {input_path}:{v.detail}", file=sys.stderr)
    qf = QualityFilter(cfg, engine)
    by_line: dict[int, Verdict] = {n: v for n, v in bad}
    bar = tqdm(total=len(subjects), desc="filter", unit="row", disable=not progress, file=sys.stderr)
    for k in range(0, len(subjects), batch_size):
        chunk = subjects[k:k + batch_size]
        for (n, _), v in zip(chunk, qf.evaluate([s for _, s in chunk])):
            by_line[n] = v
        bar.update(len(chunk))
    bar.close()
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for n in sorted(by_line):
            f.write(json.dumps(asdict(by_line[n]), ensure_ascii=False) + "\n")
    tmp.replace(out)
    verdicts = list(by_line.values())
    reasons: dict[str, int] = {}
    for v in verdicts:
        if not v.keep:
            reasons[v.reason] = reasons.get(v.reason, 0) + 1
    return {"candidates": len(verdicts), "kept": sum(v.keep for v in verdicts), "malformed": len(bad),
            "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1]))}


def filter_config(profile) -> LLMConfig:
    """The profile's llm section; the expected language of the text is the profile's unless it says otherwise."""
    cfg = profile.llm
    return cfg if cfg.output_language else cfg.model_copy(update={"output_language": profile.language})


def filter_command(a) -> int:
    """``python -m pipeline filter``: the profile's llm checks over a JSONL of candidates."""
    import os

    from pipeline.core.config import load_profile

    path = os.path.abspath(os.path.expanduser(a.profile)) if a.profile else None
    cfg = filter_config(load_profile(a.lang, path))
    engine = None
    if not a.rules_only and (cfg.roundtrip or cfg.judge):
        from pipeline.backends.llm import load_llm

        engine = load_llm(cfg)
    summary = run_filter(os.path.abspath(a.input), os.path.abspath(a.output), cfg, engine,
                         progress=not a.no_progress)
    print(json.dumps(summary, ensure_ascii=False))
    return 0
