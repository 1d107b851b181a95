"""Text normalisation for scoring (WER) and comparisons."""
from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s']", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """Lowercase, strip punctuation (keep apostrophes inside words), collapse whitespace."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _PUNCT.sub(" ", t).replace(" '", " ").replace("' ", " ")
    return _SPACE.sub(" ", t).strip()


def wer(reference: str | None, hypothesis: str | None) -> float | None:
    """Word error rate (jiwer) on normalised text; None when there is no usable reference."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return None
    return float(jiwer.wer(ref, hyp if hyp else "<empty>"))


def cer(reference: str | None, hypothesis: str | None) -> float | None:
    """Character error rate (jiwer) on normalised text; None when there is no usable reference."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return None
    return float(jiwer.cer(ref, hyp if hyp else "<empty>"))


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    """WER over a corpus (errors / reference words), pairs without a usable reference left out; NaN if none."""
    import jiwer

    pairs = [(normalize(r), normalize(h) or "<empty>") for r, h in zip(refs, hyps) if normalize(r)]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
