"""Quality filters for generated instruction rows; every rejection carries a reason code.

Three layers, cheapest first (``pipeline.generate.Generate`` runs them in this order):

1. Rule filters (no model): length, refusals, prompt text leaking into the output, answers not
   supported by the transcript, output in another language (py3langid), voice attributes that
   contradict the measured labels.
2. LLM judge, as the filtering prompt of the SALM data-generation paper (arXiv 2406.12946): the
   instruction and response are shown with the transcript (QA) or the DeSTA2 seed description
   (descriptions) and scored 1-5 for groundedness and usefulness as schema-constrained JSON; a row
   with either score below ``judge_min_score`` is rejected as ``judge_low``, the scores kept.
3. Near-duplicate removal within a shard: MinHash LSH (datasketch) over character 5-gram shingles;
   of a group of near twins the best judged (then the first by id) is kept, the others are rejected
   as ``near_duplicate`` with the kept twin's id in the detail.

Transcripts are data: every prompt fences them in tags and says they are never instructions, and
the judge is told to score, not to obey, text spoken in the clip.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

from pydantic import BaseModel, Field, ValidationError

from .config import LLMConfig
from .llm import ChatRequest, LLMEngine
from .prompts import render, template_hash
from .textnorm import normalize

REFUSAL = re.compile(r"\b(as an ai|i (?:cannot|can't|am unable to|'m unable to)|i'm sorry|i apologi[sz]e|language model)\b", re.I)
# Prompt text that must not surface in a response (the listener never saw a transcript or attributes).
LEAK = re.compile(r"(audio_description|transcript|attribute names|written description|timestamped|in parentheses|"
                  r"not addressed to you|\bSNR\b)", re.I)
STOP = set("a an the and or but of to in on at for with is are was were be been it this that these those i you he she we they my your his her our their what which who how do does did not no yes so as by from".split())
LEAK_NGRAM = 8  # this many consecutive words copied from the prompt's own wording => prompt_leak
MALE = re.compile(r"\b(male|man|men|boy|masculine|gentleman)\b", re.I)
FEMALE = re.compile(r"\b(female|woman|women|girl|feminine|lady)\b", re.I)

Failure = tuple[str, str]  # (reason code, human-readable detail)


# ---- rule filters -------------------------------------------------------------------------------------
def grounded(answer: str, transcript: str) -> float:
    """Share of the answer's content words that occur in the transcript."""
    ans = [w for w in normalize(answer).split() if w not in STOP]
    if not ans:
        return 0.0
    tr = set(normalize(transcript).split())
    return sum(w in tr for w in ans) / len(ans)


@lru_cache(maxsize=1)
def _langid():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as e:  # pragma: no cover - declared dependency
        raise ImportError("the language filter needs py3langid (pip install py3langid==0.3.0), "
                          "or set llm.language_check: false") from e
    return LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    lang, p = _langid().classify(text)
    return str(lang), float(p)


def language_mismatch(text: str, expected: str | None, min_words: int = 4, min_prob: float = 0.9) -> Failure | None:
    """Reject text that a language identifier confidently places in another language than expected.
    Short texts (< min_words) are not judged: identification is unreliable on a few words."""
    if not expected or len(text.split()) < min_words:
        return None
    lang, p = detect_language(text)
    if lang != expected.split("-")[0].lower() and p >= min_prob:
        return "wrong_language", f"detected {lang} (p={p:.2f}), expected {expected}"
    return None


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def prompt_ngrams(*texts: str, n: int = LEAK_NGRAM) -> frozenset:
    """Word n-grams of the fixed wording of the prompts (not of the transcript they carry)."""
    out: set = set()
    for t in texts:
        out |= _ngrams(normalize(t).split(), n)
    return frozenset(out)


def leaked_prompt(text: str, ngrams: frozenset, n: int = LEAK_NGRAM) -> Failure | None:
    m = LEAK.search(text)
    if m:
        return "prompt_leak", f"prompt text leaked: {m.group(0)!r}"
    hit = _ngrams(normalize(text).split(), n) & ngrams
    if hit:
        return "prompt_leak", f"copies the prompt: {' '.join(sorted(hit)[0])!r}"
    return None


def contradicts_labels(text: str, row: dict, transcript: str = "") -> Failure | None:
    """A voice attribute stated in the response that contradicts the measured label (gender words
    that are not simply quoted from the transcript)."""
    from .generate import gender_of

    gender = gender_of(row) or ""
    other = FEMALE if gender == "male" else MALE if gender == "female" else None
    if other is None:
        return None
    quoted = set(normalize(transcript).split())
    for m in other.finditer(text):
        if m.group(0).lower() not in quoted:
            return "contradicts_labels", f"says {m.group(0)!r} but the measured gender is {gender}"
    return None


def check_text(text: str, min_words: int = 5, max_words: int = 200) -> Failure | None:
    """Length, refusal and prompt-leak rules for free text (descriptions)."""
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


def check_description(text: str, row: dict, transcript: str, cfg: LLMConfig, ngrams: frozenset = frozenset(),
                      language: str | None = None) -> Failure | None:
    return (check_text(text, cfg.description_min_words, cfg.description_max_words)
            or leaked_prompt(text, ngrams)
            or (language_mismatch(text, language) if cfg.language_check else None)
            or contradicts_labels(text, row, transcript))


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
    g = grounded(qa.answer, transcript)
    if REFUSAL.search(qa.answer) or REFUSAL.search(qa.question):
        return g, ("refusal", "refusal in QA pair")
    if LEAK.search(text):
        return g, ("prompt_leak", "prompt text leaked into QA pair")
    leak = leaked_prompt(text, ngrams)
    if leak:
        return g, leak
    n = len(qa.answer.split())
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


# ---- LLM judge --------------------------------------------------------------------------------------
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


# ---- near duplicates ----------------------------------------------------------------------------------
def shingles(text: str, k: int = 5) -> set[bytes]:
    t = normalize(text)
    if len(t) <= k:
        return {t.encode()}
    return {t[i:i + k].encode() for i in range(len(t) - k + 1)}


def near_duplicates(texts: list[str], threshold: float = 0.8, num_perm: int = 64, seed: int = 1) -> dict[int, int]:
    """Indices of near duplicates -> index of the kept twin. ``texts`` are visited in the order given
    (put the best first): a text is dropped when the LSH finds an already kept text whose estimated
    Jaccard similarity is at least ``threshold``."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[str, MinHash] = {}
    dropped: dict[int, int] = {}
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(list(shingles(text)))
        twins = [int(k) for k in lsh.query(m) if kept[k].jaccard(m) >= threshold]
        if twins:
            dropped[i] = min(twins)
            continue
        lsh.insert(str(i), m)
        kept[str(i)] = m
    return dropped
