"""The llm stage: instruction rows for one shard of utterances.

Per utterance, in this order of LLM calls: DeSTA2 descriptions (``descriptions``), SALM-style QA
pairs (``qa``), then the LLM judge over both; SpeechVerse/GRASS-style label tasks (``label_tasks``:
asr, gender, speaking_rate, pitch, noise_level, language, + emotion, accent where labelled) come from
templates, without an LLM.

Generated rows go through the quality gate cheapest first (``pipeline.stages.llm.filter``, the same code
``python -m pipeline filter`` runs: rules of ``pipeline.quality.checks``, the QA round trip), items it rejects
are asked again with a new seed (bounded); then the LLM judge when ``llm.judge`` is on (``pipeline.quality.judge``)
and near-duplicate removal within the shard (``pipeline.quality.dedup``). Every rejection has a reason code. Row ids: ``<utterance>-description-0``,
``<utterance>-qa-<k>`` (k < n_qa), ``<utterance>-<label task>-0``.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from pipeline.backends.llm import LLMEngine, load_llm
from pipeline.core.config import LLMConfig, Profile
from pipeline.core.prompts import lines, localized
from pipeline.core.rows import reject, stable_seed, transcript_of
from pipeline.quality.dedup import near_duplicates
from pipeline.quality.checks import Subject, asr_unsure
from pipeline.quality.judge import YES_NO, Candidate, Judge
from pipeline.stages.llm.descriptions import QUESTIONS, Descriptions, pick_question
from pipeline.stages.llm.filter import QualityFilter
from pipeline.stages.llm.label_tasks import LabelTasks
from pipeline.stages.llm.qa import SEED_OFFSET, QuestionAnswers, pairs_asked
from pipeline.stages.llm.seed import seed_description


class LlmStage:
    """LLM stage for one shard of utterance rows -> (instruction rows, rejects)."""

    name = "llm"
    reads = "asr"
    writes = "instructions"

    @classmethod
    def from_profile(cls, profile: Profile) -> "LlmStage":
        return cls(profile.llm, load_llm(profile.llm), profile.dataset, language=profile.language)

    def __init__(self, cfg: LLMConfig, engine: LLMEngine, dataset: str, judge_engine: LLMEngine | None = None,
                 language: str | None = None):
        """``language``: the profile language; picks the prompt files of that language (prompts/<lang>/...)."""
        self.cfg, self.engine, self.dataset, self.language = cfg, engine, dataset, language
        self.descriptions = Descriptions(cfg, engine, dataset, language)
        self.qa = QuestionAnswers(cfg, engine, dataset, language)
        self.labels = LabelTasks(cfg, dataset, language)
        self._judge_engine = judge_engine
        self._judge: Judge | None = None

    @property
    def judge(self) -> Judge:
        if self._judge is None:
            engine = self._judge_engine
            if engine is None:
                if self.cfg.judge_model and self.cfg.judge_model != self.cfg.model:
                    engine = load_llm(self.cfg.model_copy(update={"model": self.cfg.judge_model}))
                else:
                    engine = self.engine
            self._judge = Judge(self.cfg, engine)
        return self._judge

    @property
    def thread_safe(self) -> bool:
        """process() may run for several shards at once (the runner then keeps llm.shards_in_flight of them in
        flight): true when the engine takes calls from several threads."""
        return bool(getattr(self.engine, "thread_safe", False))

    @classmethod
    def in_flight(cls, profile: Profile) -> int:
        """Shards the runner may give this stage at once in one process: llm.shards_in_flight when the
        profile's engine takes calls from several threads (their requests then share decode steps), else 1."""
        from pipeline.backends.llm import LLM

        try:
            safe = bool(getattr(LLM.get(profile.llm.backend), "thread_safe", False))
        except Exception:  # noqa: BLE001 - a backend that cannot load says so when the stage is made
            safe = False
        return profile.llm.shards_in_flight if safe else 1

    def close(self) -> None:
        """Stop what the engines hold (llama-server subprocesses); the stage is not used after this."""
        judge = self._judge.engine if self._judge is not None else None
        for e in {id(x): x for x in (self.engine, self._judge_engine, judge) if x is not None}.values():
            if hasattr(e, "close"):
                e.close()

    def process(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        cfg = self.cfg
        questions = lines(localized(QUESTIONS, self.language))
        desc, qa, transcripts, seeds, rejects_early = [], [], {}, {}, []
        for row in rows:
            transcript, source = transcript_of(row)
            transcripts[row["id"]] = (transcript, source)
            seed = stable_seed(cfg.seed, row["id"])
            seeds[row["id"]] = seed_description(row, transcript, self.language)
            base = {"row": row, "source": source, "transcript": transcript,
                    "language": cfg.output_language or row.get("asr_language"), "seed_description": seeds[row["id"]]}
            low = asr_unsure(cfg, source, row.get("asr_avg_logprob"))
            if low:  # the rule would reject whatever is generated from it: not generated at all
                low += " (not generated)"
                rejects_early.append(reject(f"{row['id']}-description-0", row, "llm", "description_asr_low_confidence",
                                            f"description: {low}", None))
                rejects_early.extend(reject(f"{row['id']}-qa-{k}", row, "llm", "qa_asr_low_confidence", f"qa: {low}", None)
                                     for k in range(pairs_asked(cfg, transcript, base["language"])))
                continue
            desc.append({**base, "seed": seed, "question": pick_question(seed, questions)})
            if cfg.n_qa > 0:
                qa.append({**base, "seed": seed + SEED_OFFSET})

        utt = {row["id"]: row for row in rows}
        out, rejects = self.labels.process(rows, transcripts, seeds)
        rejects.extend(rejects_early)

        # ---- generation + rule filters; descriptions and QA at once where the engine takes calls from two threads
        # (their requests then share the decode steps: the slots stay full while either side retries)
        if desc and qa and self.thread_safe:
            with ThreadPoolExecutor(1, thread_name_prefix="llm-qa") as pool:
                qa_done = pool.submit(self.qa.generate, qa)
                self.descriptions.generate(desc)
                qa_done.result()
        else:
            self.descriptions.generate(desc)
            self.qa.generate(qa)
        cands, rej = self.descriptions.collect(desc)
        rejects.extend(rej)
        more, rej = self.qa.collect(qa)
        cands.extend(more)
        rejects.extend(rej)

        if cfg.judge and cands:
            cands = self._judged(cands, utt, rejects)
        if cfg.dedup:
            cands = self._deduplicated(cands, utt, rejects)

        out.extend(c.row for c in cands)
        return out, rejects

    def _judged(self, cands: list[Candidate], utt: dict[str, dict], rejects: list[dict]) -> list[Candidate]:
        """Score every candidate with the LLM judge; the kept ones, rejects appended for the others."""
        if self.cfg.judge_scoring == "probability":
            return self._judged_by_probability(cands, utt, rejects)
        self.judge.score(cands)
        kept = []
        for c in cands:
            bad = self.judge.verdict(c)
            if c.scores is not None:
                c.row.update(judge_groundedness=c.scores.groundedness, judge_usefulness=c.scores.usefulness)
            c.row["judge_json"] = self.judge.provenance(c)
            if bad:
                rejects.append(reject(c.id, utt[c.row["utterance_id"]], "llm", bad[0], f"{c.kind}: {bad[1]}", c.response))
            else:
                kept.append(c)
        return kept

    def _judged_by_probability(self, cands: list[Candidate], utt: dict[str, dict], rejects: list[dict]) -> list[Candidate]:
        """The judge as the filter command runs it: P("Yes") from token probabilities (one code path)."""
        qf = QualityFilter(self.cfg, self.engine, judge_engine=self.judge.engine)
        subs = [Subject(c.id, c.kind, c.context, c.context, c.prompt, c.response) for c in cands]
        scores = qf.judge_scores(subs)
        kept = []
        for c, p in zip(cands, scores):
            c.row["judge_json"] = json.dumps({"scoring": "probability", "p_yes": round(p, 4),
                                              "threshold": self.cfg.judge_min_prob, "engine": self.judge.engine.name,
                                              "model_id": self.judge.engine.model_id, "prompt": YES_NO})
            if p < self.cfg.judge_min_prob:
                rejects.append(reject(c.id, utt[c.row["utterance_id"]], "llm", "judge_low",
                                      f"{c.kind}: judge P(yes) {p:.2f} < {self.cfg.judge_min_prob}", c.response))
            else:
                kept.append(c)
        return kept

    def _deduplicated(self, cands: list[Candidate], utt: dict[str, dict], rejects: list[dict]) -> list[Candidate]:
        """Near duplicates within the shard, per task (best judged first, then by id); rejects appended."""
        cfg = self.cfg
        for kind in ("description", "qa"):
            group = sorted((c for c in cands if c.kind == kind),
                           key=lambda c: (-(c.scores.groundedness + c.scores.usefulness) if c.scores else 0, c.id))
            texts = [c.response if kind == "description" else f"{c.prompt} {c.response}" for c in group]
            dup = near_duplicates(texts, cfg.dedup_threshold, cfg.dedup_num_perm)
            for i, j in dup.items():
                c, twin = group[i], group[j]
                rejects.append(reject(c.id, utt[c.row["utterance_id"]], "llm", "near_duplicate",
                                      f"{kind}: near duplicate of {twin.id} (MinHash Jaccard >= {cfg.dedup_threshold})",
                                      c.response))
            drop = {group[i].id for i in dup}
            cands = [c for c in cands if c.id not in drop]
        return cands
