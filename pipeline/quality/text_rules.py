"""Rule filters for generated text (no model): length, refusals, prompt text leaking into the output,
output in another language (py3langid), voice attributes that contradict the measured labels.

Every rule returns ``None`` or a ``Failure``: (reason code, human-readable detail).
"""
from __future__ import annotations

import re
from functools import lru_cache

from pipeline.core.config import LLMConfig
from pipeline.core.rows import gender_of
from pipeline.core.text import normalize, word_count

REFUSAL = re.compile(r"\b(as an ai|i (?:cannot|can't|am unable to|'m unable to)|i'm sorry|i apologi[sz]e|language model)\b", re.I)
# Prompt text that must not surface in a response (the listener never saw a transcript or attributes).
LEAK = re.compile(r"(audio_description|transcript|attribute names|written description|timestamped|in parentheses|"
                  r"not addressed to you|\bSNR\b)", re.I)
LEAK_NGRAM = 8  # this many consecutive words copied from the prompt's own wording => prompt_leak
MALE = re.compile(r"\b(male|man|men|boy|masculine|gentleman)\b", re.I)
FEMALE = re.compile(r"\b(female|woman|women|girl|feminine|lady)\b", re.I)

Failure = tuple[str, str]  # (reason code, human-readable detail)


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
    if not expected or word_count(text, expected) < min_words:  # characters / 2 for ja, zh, ...
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
    gender = gender_of(row) or ""
    other = FEMALE if gender == "male" else MALE if gender == "female" else None
    if other is None:
        return None
    quoted = set(normalize(transcript).split())
    for m in other.finditer(text):
        if m.group(0).lower() not in quoted:
            return "contradicts_labels", f"says {m.group(0)!r} but the measured gender is {gender}"
    return None


def check_text(text: str, min_words: int = 5, max_words: int = 200, language: str | None = None) -> Failure | None:
    """Length, refusal and prompt-leak rules for free text (descriptions); words are characters / 2 for
    languages written without spaces (``language`` ja, zh, ...)."""
    t = text.strip()
    n = word_count(t, language)
    n = int(n) if n == int(n) else round(n, 1)
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
    """All rules for a description, cheapest first."""
    return (check_text(text, cfg.description_min_words, cfg.description_max_words, language)
            or leaked_prompt(text, ngrams)
            or (language_mismatch(text, language) if cfg.language_check else None)
            or contradicts_labels(text, row, transcript))
