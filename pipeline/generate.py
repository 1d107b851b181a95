"""LLM generation recipes on one engine: DeSTA2 descriptions and SALM-style QA pairs.

Outputs are validated (pydantic for JSON, rule filters for text); malformed output is retried a
bounded number of times with a new seed, then rejected with the raw text kept.
"""
from __future__ import annotations

import hashlib
import json
import random
import re

from pydantic import BaseModel, Field, ValidationError

from .config import LLMConfig
from .llm import ChatRequest, LLMEngine
from .prompts import lines, render, template_hash
from .textnorm import normalize

AUDIO_TOKEN = "<|AUDIO|>"
REFUSAL = re.compile(r"\b(as an ai|i (?:cannot|can't|am unable to|'m unable to)|i'm sorry|i apologi[sz]e|language model)\b", re.I)
# Prompt text that must not surface in a response (the listener never saw a transcript or attributes).
LEAK = re.compile(r"(audio_description|transcript|attribute names|written description|timestamped|in parentheses|"
                  r"not addressed to you|\bSNR\b)", re.I)
STOP = set("a an the and or but of to in on at for with is are was were be been it this that these those i you he she we they my your his her our their what which who how do does did not no yes so as by from".split())


class QAPair(BaseModel):
    question: str = Field(min_length=8, max_length=300)
    answer: str = Field(min_length=1, max_length=300)


QA_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}


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


def seed_description(row: dict, transcript: str) -> str:
    """DeSTA2 seed: "[00:00-00:05] transcript (Gender: ..., Pitch: ..., Speaking speed: ..., SNR: ..., Duration: 5s)".
    Attributes that no estimator produced are left out rather than guessed."""
    dur = float(row["duration_s"])
    attrs = [
        ("Gender", (row.get("gender") or "").capitalize() or None),
        ("Pitch", pitch_label(row.get("pitch_mean_hz"), row.get("gender"))),
        ("Speaking speed", speed_label(len(transcript.split()), dur)),
        ("SNR", snr_label(row.get("snr_db"))),
        ("Duration", f"{dur:.0f}s"),
    ]
    return render("desta_seed.j2", start=mmss(0), end=mmss(dur), transcript=transcript,
                  attributes=[(k, v) for k, v in attrs if v])


def stable_seed(base: int, *parts: str) -> int:
    return (int(hashlib.sha1("|".join(parts).encode()).hexdigest()[:8], 16) ^ base) & 0x7FFFFFFF


def check_text(text: str, min_words: int = 5, max_words: int = 200) -> tuple[str, str] | None:
    t = text.strip()
    n = len(t.split())
    if n < min_words:
        return "too_short", f"{n} words < {min_words}"
    if n > max_words:
        return "too_long", f"{n} words > {max_words}"
    if REFUSAL.search(t):
        return "refusal", f"refusal pattern: {REFUSAL.search(t).group(0)!r}"
    if LEAK.search(t):
        return "prompt_leak", f"prompt text leaked: {LEAK.search(t).group(0)!r}"
    return None


def grounded(answer: str, transcript: str) -> float:
    """Share of the answer's content words that occur in the transcript."""
    ans = [w for w in normalize(answer).split() if w not in STOP]
    if not ans:
        return 0.0
    tr = set(normalize(transcript).split())
    return sum(w in tr for w in ans) / len(ans)


def parse_qa(raw: str, transcript: str) -> tuple[QAPair | None, tuple[str, str] | None]:
    m = re.search(r"\{.*\}", raw, re.S)
    try:
        qa = QAPair.model_validate_json(m.group(0) if m else raw)
    except ValidationError as e:
        return None, ("malformed_json", f"{e.error_count()} validation error(s): {e.errors()[0]['msg']}")
    if REFUSAL.search(qa.answer) or REFUSAL.search(qa.question):
        return None, ("refusal", "refusal in QA pair")
    if LEAK.search(qa.question + " " + qa.answer):
        return None, ("prompt_leak", "prompt text leaked into QA pair")
    g = grounded(qa.answer, transcript)
    if g < 0.5:
        return None, ("ungrounded", f"only {g:.0%} of the answer's content words occur in the transcript")
    return qa, None


def messages(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": f"{AUDIO_TOKEN}\n{prompt}"}, {"role": "assistant", "content": response}]


class Generate:
    """LLM stage for one shard of utterance rows -> (instruction rows, rejects)."""

    name = "llm"

    def __init__(self, cfg: LLMConfig, engine: LLMEngine, dataset: str):
        self.cfg, self.engine, self.dataset = cfg, engine, dataset
        self.desc_hash = template_hash("desta_system.j2", "desta_seed.j2", "desta_user.j2")
        self.qa_hash = template_hash("qa_system.j2", "qa_user.j2")

    def _request(self, system: str, user: str, seed: int, schema: dict | None = None) -> ChatRequest:
        return ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                           max_tokens=self.cfg.max_tokens, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                           seed=seed, json_schema=schema)

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

    def process(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        system_d, system_q = render("desta_system.j2"), render("qa_system.j2")
        questions = lines("description_questions.txt")
        desc, qa = [], []
        for row in rows:
            transcript, source = (row["reference_text"], "reference") if row.get("reference_text") else (row.get("asr_text") or "", "asr")
            seed = stable_seed(self.cfg.seed, row["id"])
            q = questions[0] if random.Random(seed).random() < 0.5 else random.Random(seed + 1).choice(questions)
            seed_desc = seed_description(row, transcript)
            desc.append({"row": row, "seed": seed, "question": q, "seed_description": seed_desc, "source": source, "transcript": transcript})
            qa.append({"row": row, "seed": seed + 7919, "source": source, "transcript": transcript})

        self._run(desc, lambda it, s: self._request(system_d, render("desta_user.j2", seed_description=it["seed_description"], question=it["question"]), s),
                  lambda raw, it: (raw.strip(), check_text(raw)))
        self._run(qa, lambda it, s: self._request(system_q, render("qa_user.j2", transcript=it["transcript"]), s,
                                                QA_SCHEMA if self.cfg.structured_output else None),
                  lambda raw, it: parse_qa(raw, it["transcript"]))

        out, rejects = [], []
        for task, items, tmpl, h in (("description", desc, "desta_user.j2", self.desc_hash), ("qa", qa, "qa_user.j2", self.qa_hash)):
            for it in items:
                row = it["row"]
                rid = f"{row['id']}-{task}-0"
                if "result" not in it:
                    reason, detail, raw = it["failure"]
                    rejects.append({"id": rid, "stage": "llm", "reason": f"{task}_{reason}", "source_path": row["source_path"],
                                    "start_s": row["start_s"], "end_s": row["end_s"], "raw": raw,
                                    "detail": f"{task}: {detail} (after {self.cfg.retries + 1} attempts)"})
                    continue
                if task == "description":
                    prompt, response = it["question"], it["result"]
                else:
                    prompt, response = it["result"].question.strip(), it["result"].answer.strip()
                out.append({
                    "id": rid, "utterance_id": row["id"], "task": task, "dataset": self.dataset, "audio": row["audio"],
                    "seed_description": it.get("seed_description") or seed_description(row, it["transcript"]),
                    "prompt": prompt, "response": response, "messages": messages(prompt, response),
                    "text_source": it["source"], "engine": self.engine.name, "model_id": self.engine.model_id,
                    "prompt_template": tmpl, "prompt_hash": h,
                    "sampling_json": json.dumps({"temperature": self.cfg.temperature, "top_p": self.cfg.top_p,
                                                 "max_tokens": self.cfg.max_tokens, "attempts": it["attempts"]}),
                    "seed": it["seed"] + it["attempts"] - 1,
                })
        return out, rejects
