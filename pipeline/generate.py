"""The llm stage: instruction rows for one shard of utterances.

- DeSTA2 descriptions: the seed description "[00:00-00:05] transcript (Gender: ..., ...)" is given
  to the LLM with an instruction drawn from ``prompts/description_questions.txt`` (the paper's
  "What can you hear from the audio?" for about half of the utterances).
- SALM-style QA: ``n_qa`` question/answer pairs per utterance in one schema-constrained JSON reply,
  grounded in the transcript (the reference when there is one, else the ASR pseudo-label;
  ``text_source`` says which), deduplicated within the utterance.
- SpeechVerse/GRASS-style label tasks (``pipeline.tasks``): asr, gender, speaking_rate, pitch,
  noise_level, language (+ emotion, accent where labelled), from templates, no LLM.

Generated rows then go through ``pipeline.quality``: rule filters, LLM judge, near-duplicate
removal. Malformed output is retried a bounded number of times with a new seed, then rejected with
the raw text kept; every rejection has a reason code. Row ids: ``<utterance>-description-0``,
``<utterance>-qa-<k>`` (k < n_qa), ``<utterance>-<label task>-0``.
"""
from __future__ import annotations

import hashlib
import json
import random

from . import quality
from .config import LLMConfig
from .llm import ChatRequest, LLMEngine
from .prompts import lines, render, template_hash
from .quality import LEAK, QA_PAIR_FIELDS, REFUSAL, STOP, QAPair, check_text, grounded, parse_qa  # noqa: F401 (API)
from .textnorm import normalize

AUDIO_TOKEN = "<|AUDIO|>"
QA_SCHEMA = {"type": "object", "properties": QA_PAIR_FIELDS, "required": ["question", "answer"]}


def mmss(t: float) -> str:
    t = max(0, int(round(t)))
    return f"{t // 60:02d}:{t % 60:02d}"


def speed_label(words: int, duration: float) -> str:
    wps = words / max(duration, 0.1)
    return "slow" if wps < 2.0 else "fast" if wps > 3.5 else "normal speed"


def pitch_label(pitch: float | None, gender: str | None) -> str | None:
    if pitch is None:
        return None
    ref = {"male": 120.0, "female": 210.0}.get(gender or "", 165.0)
    return "low pitch" if pitch < 0.85 * ref else "high pitch" if pitch > 1.15 * ref else "normal pitch"


def snr_label(snr: float | None) -> str | None:
    if snr is None:
        return None
    q = "very noisy" if snr < 10 else "noisy" if snr < 20 else "fairly clean" if snr < 30 else "clean"
    return f"{q} ({snr:.0f} dB)"


def gender_of(row: dict) -> str | None:
    """Speaker gender: a manifest label (labels_json.gender, given by a person) over the estimate."""
    try:
        g = (json.loads(row.get("labels_json") or "{}") or {}).get("gender")
    except (TypeError, ValueError, AttributeError):
        g = None
    g = g if isinstance(g, str) and g.lower() in ("male", "female") else row.get("gender")
    return g.lower() if g else None


def _categorical(row: dict, name: str) -> str | None:
    """A manifest label (labels_json.<name>) over the estimate; an estimate read from the transcript's
    words (``<name>_source`` text-...) is marked as such, so the LLM does not present it as heard."""
    try:
        v = (json.loads(row.get("labels_json") or "{}") or {}).get(name)
    except (TypeError, ValueError, AttributeError):
        v = None
    if isinstance(v, str) and v.strip():
        return v.strip().lower()
    v = row.get(name)
    if not v:
        return None
    return f"{v} (from the words)" if (row.get(f"{name}_source") or "").startswith("text-") else str(v)


def seed_description(row: dict, transcript: str) -> str:
    """DeSTA2 seed: "[00:00-00:05] transcript (Gender: ..., Emotion: ..., Accent: ..., Pitch: ..., Speaking speed: ...,
    SNR: ..., Duration: 5s)".
    Attributes that no estimator produced are left out rather than guessed."""
    dur = float(row["duration_s"])
    attrs = [
        ("Gender", (gender_of(row) or "").capitalize() or None),
        ("Emotion", _categorical(row, "emotion")),
        ("Accent", _categorical(row, "accent")),
        ("Pitch", pitch_label(row.get("pitch_mean_hz"), gender_of(row))),
        ("Speaking speed", speed_label(len(transcript.split()), dur)),
        ("SNR", snr_label(row.get("snr_db"))),
        ("Duration", f"{dur:.0f}s"),
    ]
    return render("desta_seed.j2", start=mmss(0), end=mmss(dur), transcript=transcript,
                  attributes=[(k, v) for k, v in attrs if v])


def stable_seed(base: int, *parts: str) -> int:
    return (int(hashlib.sha1("|".join(parts).encode()).hexdigest()[:8], 16) ^ base) & 0x7FFFFFFF


def messages(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": f"{AUDIO_TOKEN}\n{prompt}"}, {"role": "assistant", "content": response}]


def transcript_of(row: dict) -> tuple[str, str]:
    """(grounding text, text_source): the reference transcript when there is one, else the ASR pseudo-label."""
    if (row.get("reference_text") or "").strip():
        return row["reference_text"].strip(), "reference"
    return (row.get("asr_text") or "").strip(), "asr"


def _reject(rid: str, row: dict, reason: str, detail: str, raw: str | None) -> dict:
    return {"id": rid, "stage": "llm", "reason": reason, "detail": detail, "source_path": row.get("source_path"),
            "start_s": row.get("start_s"), "end_s": row.get("end_s"), "raw": raw}


class Generate:
    """LLM stage for one shard of utterance rows -> (instruction rows, rejects)."""

    name = "llm"

    def __init__(self, cfg: LLMConfig, engine: LLMEngine, dataset: str, judge_engine: LLMEngine | None = None):
        from .tasks import LabelTasks

        self.cfg, self.engine, self.dataset = cfg, engine, dataset
        self.desc_hash = template_hash("desta_system.j2", "desta_seed.j2", "desta_user.j2", "description_questions.txt")
        self.qa_hash = template_hash("qa_system.j2", "qa_user.j2")
        self.labels = LabelTasks(cfg, dataset)
        self._judge_engine = judge_engine
        self._judge: quality.Judge | None = None
        n = max(1, cfg.n_qa)
        self.desc_ngrams = quality.prompt_ngrams(render("desta_system.j2"),
                                                 render("desta_user.j2", seed_description="", question=""))
        self.qa_ngrams = quality.prompt_ngrams(render("qa_system.j2", n=n), render("qa_user.j2", transcript="", n=n))

    @property
    def judge(self) -> quality.Judge:
        if self._judge is None:
            engine = self._judge_engine
            if engine is None:
                if self.cfg.judge_model and self.cfg.judge_model != self.cfg.model:
                    from .llm import load_llm

                    engine = load_llm(self.cfg.model_copy(update={"model": self.cfg.judge_model}))
                else:
                    engine = self.engine
            self._judge = quality.Judge(self.cfg, engine)
        return self._judge

    def _request(self, system: str, user: str, seed: int, schema: dict | None = None, max_tokens: int | None = None) -> ChatRequest:
        return ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                           max_tokens=max_tokens or self.cfg.max_tokens, temperature=self.cfg.temperature,
                           top_p=self.cfg.top_p, seed=seed, json_schema=schema)

    def _sampling(self, **extra) -> str:
        return json.dumps({"temperature": self.cfg.temperature, "top_p": self.cfg.top_p,
                           "max_tokens": self.cfg.max_tokens, **extra})

    def _run(self, items: list[dict], build, validate) -> None:
        """Generate for every item, retrying failures with a new seed up to cfg.retries times.
        Sets item['result'] on success or item['failure'] = (reason, detail, raw)."""
        pending = list(items)
        for attempt in range(self.cfg.retries + 1):
            if not pending:
                break
            outs = self.engine.chat([build(it, it["seed"] + attempt) for it in pending])
            still = []
            for it, raw in zip(pending, outs):
                value, fail = validate(raw, it)
                if fail is None:
                    it["result"], it["attempts"] = value, attempt + 1
                else:
                    it["failure"] = (*fail, raw)
                    still.append(it)
            pending = still

    def _run_qa(self, items: list[dict], system: str, n: int) -> None:
        """Ask each utterance for n QA pairs; keep the pairs that pass the rules and are not the same
        question again; ask again (new seed, bounded) while slots are empty. Sets item['accepted'] =
        [(QAPair, grounding, attempt, raw)] and item['fails'] = [(reason, detail, raw)]."""
        schema = quality.qa_schema(n) if self.cfg.structured_output else None
        max_tokens = n * self.cfg.qa_max_tokens_per_pair
        for it in items:
            it["accepted"], it["fails"] = [], []
        pending = list(items)
        for attempt in range(self.cfg.retries + 1):
            if not pending:
                break
            outs = self.engine.chat([self._request(system, render("qa_user.j2", transcript=it["transcript"], n=n),
                                                   it["seed"] + attempt, schema, max_tokens) for it in pending])
            for it, raw in zip(pending, outs):
                pairs, fail = quality.parse_qa_pairs(raw)
                if fail:
                    it["fails"].append((*fail, raw))
                    continue
                if len(pairs) < n:
                    it["fails"].append(("too_few_pairs", f"{len(pairs)} pair(s) in the reply, {n} asked for", raw))
                for qa in pairs:
                    if len(it["accepted"]) == n:
                        break
                    g, bad = quality.check_qa(qa, it["transcript"], self.cfg, self.qa_ngrams, it["language"])
                    if bad is None:
                        seen = {normalize(a[0].question): k for k, a in enumerate(it["accepted"])}
                        if normalize(qa.question) in seen:
                            bad = ("duplicate", f"same question as {it['row']['id']}-qa-{seen[normalize(qa.question)]}")
                    if bad:
                        it["fails"].append((*bad, json.dumps(qa.model_dump(), ensure_ascii=False)))
                    else:
                        it["accepted"].append((qa, g, attempt, raw))
            pending = [it for it in pending if len(it["accepted"]) < n]

    def process(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        cfg = self.cfg
        system_d = render("desta_system.j2")
        questions = lines("description_questions.txt")
        n = cfg.n_qa
        system_q = render("qa_system.j2", n=max(1, n))
        desc, qa, transcripts, seeds = [], [], {}, {}
        for row in rows:
            transcript, source = transcript_of(row)
            transcripts[row["id"]] = (transcript, source)
            seed = stable_seed(cfg.seed, row["id"])
            q = questions[0] if random.Random(seed).random() < 0.5 else random.Random(seed + 1).choice(questions)
            seeds[row["id"]] = seed_description(row, transcript)
            language = cfg.output_language or row.get("asr_language")
            base = {"row": row, "source": source, "transcript": transcript, "language": language}
            desc.append({**base, "seed": seed, "question": q, "seed_description": seeds[row["id"]]})
            if n > 0:
                qa.append({**base, "seed": seed + 7919})

        utt = {row["id"]: row for row in rows}
        out, rejects = self.labels.process(rows, transcripts, seeds)

        # ---- generation + rule filters
        self._run(desc, lambda it, s: self._request(system_d, render("desta_user.j2", seed_description=it["seed_description"],
                                                                      question=it["question"]), s),
                  lambda raw, it: (raw.strip(), quality.check_description(raw, it["row"], it["transcript"], cfg,
                                                                          self.desc_ngrams, it["language"])))
        no_text = [it for it in qa if not it["transcript"]]
        self._run_qa([it for it in qa if it["transcript"]], system_q, n)

        cands: list[quality.Candidate] = []
        for it in desc:
            row = it["row"]
            rid = f"{row['id']}-description-0"
            if "result" not in it:
                reason, detail, raw = it["failure"]
                rejects.append(_reject(rid, row, f"description_{reason}",
                                       f"description: {detail} (after {cfg.retries + 1} attempts)", raw))
                continue
            prompt, response = it["question"], it["result"]
            cands.append(quality.Candidate(rid, "description", it["seed_description"], prompt, response,
                                           it["seed"] + it["attempts"] - 1, self._row(
                rid, row, "description", prompt, response, it["seed_description"], it["source"], "desta_user.j2",
                self.desc_hash, self._sampling(attempts=it["attempts"], question_pool="description_questions.txt"),
                it["seed"] + it["attempts"] - 1)))
        for it in no_text:
            for k in range(n):
                rejects.append(_reject(f"{it['row']['id']}-qa-{k}", it["row"], "qa_no_transcript",
                                       "qa: no reference or ASR transcript to ground questions in", None))
        for it in qa:
            if not it["transcript"]:
                continue
            row = it["row"]
            for k, (pair, g, attempt, raw) in enumerate(it["accepted"]):
                rid = f"{row['id']}-qa-{k}"
                prompt, response = pair.question.strip(), pair.answer.strip()
                r = self._row(rid, row, "qa", prompt, response, seeds[row["id"]], it["source"], "qa_user.j2", self.qa_hash,
                              self._sampling(attempts=attempt + 1, n_qa=n, max_tokens=n * cfg.qa_max_tokens_per_pair),
                              it["seed"] + attempt)
                r["grounding"] = round(g, 3)
                cands.append(quality.Candidate(rid, "qa", it["transcript"], prompt, response, it["seed"] + attempt, r))
            missing = range(len(it["accepted"]), n)
            fails = it["fails"][-len(missing):] if it["fails"] else []
            for j, k in enumerate(missing):
                reason, detail, raw = fails[j] if j < len(fails) else (fails[-1] if fails else
                                                                       ("too_few_pairs", "no pair left", None))
                rejects.append(_reject(f"{row['id']}-qa-{k}", row, f"qa_{reason}",
                                       f"qa: {detail} (after {cfg.retries + 1} attempts)", raw))

        # ---- LLM judge
        if cfg.judge and cands:
            self.judge.score(cands)
            kept = []
            for c in cands:
                bad = self.judge.verdict(c)
                if c.scores is not None:
                    c.row.update(judge_groundedness=c.scores.groundedness, judge_usefulness=c.scores.usefulness)
                c.row["judge_json"] = self.judge.provenance(c)
                if bad:
                    rejects.append(_reject(c.id, utt[c.row["utterance_id"]], bad[0], f"{c.kind}: {bad[1]}", c.response))
                else:
                    kept.append(c)
            cands = kept

        # ---- near duplicates within the shard (per task; best judged first, then by id)
        if cfg.dedup:
            for kind in ("description", "qa"):
                group = sorted((c for c in cands if c.kind == kind),
                               key=lambda c: (-(c.scores.groundedness + c.scores.usefulness) if c.scores else 0, c.id))
                texts = [c.response if kind == "description" else f"{c.prompt} {c.response}" for c in group]
                dup = quality.near_duplicates(texts, cfg.dedup_threshold, cfg.dedup_num_perm)
                for i, j in dup.items():
                    c, twin = group[i], group[j]
                    rejects.append(_reject(c.id, utt[c.row["utterance_id"]], "near_duplicate",
                                           f"{kind}: near duplicate of {twin.id} (MinHash Jaccard >= {cfg.dedup_threshold})",
                                           c.response))
                drop = {group[i].id for i in dup}
                cands = [c for c in cands if c.id not in drop]

        out.extend(c.row for c in cands)
        return out, rejects

    def _row(self, rid, row, task, prompt, response, seed_desc, source, tmpl, h, sampling, seed) -> dict:
        return {
            "id": rid, "utterance_id": row["id"], "task": task, "dataset": self.dataset, "audio": row["audio"],
            "seed_description": seed_desc, "prompt": prompt, "response": response,
            "messages": messages(prompt, response), "text_source": source, "engine": self.engine.name,
            "model_id": self.engine.model_id, "prompt_template": tmpl, "prompt_hash": h,
            "sampling_json": sampling, "seed": seed,
        }
