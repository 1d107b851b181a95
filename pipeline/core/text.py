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


def cer(reference: str | None, hypothesis: str | None, language: str | None = None) -> float | None:
    """Character error rate (jiwer) on normalised text; None when there is no usable reference. For a
    language written without spaces (``language`` ja, zh, th ...) spaces are not counted."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if is_no_space(language):
        ref, hyp = "".join(ref.split()), "".join(hyp.split())
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


# ---- languages (issue 16): what a "word" is, and which error rate is the convention -----------------------
#: languages written without spaces between words: scored by CER, counted in characters
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue", "km", "bo", "cmn", "wuu"})
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\u0e00-\u0eff\u1000-\u109f"
                  r"\u1780-\u17ff\u0f00-\u0fff\uff66-\uff9f]")


def base_language(code: str | None) -> str | None:
    """``pt-BR`` / ``zh_Hans`` / ``cmn`` -> ``pt`` / ``zh`` / ``zh`` (the code Whisper and py3langid report)."""
    if not code:
        return None
    c = code.replace("_", "-").split("-")[0].lower()
    return {"cmn": "zh", "jw": "jv", "nb": "no", "iw": "he"}.get(c, c)


def is_no_space(language: str | None) -> bool:
    return (base_language(language) or "") in NO_SPACE_LANGUAGES


def error_metric(language: str | None) -> str:
    """``cer`` for languages written without spaces (ja, zh, th, ...), else ``wer``."""
    return "cer" if is_no_space(language) else "wer"


def tokens(text: str | None, language: str | None = None) -> list[str]:
    """Normalised comparison units: words, or (for ja/zh/th ...) single characters, with any Latin-script
    words inside such text kept whole."""
    t = normalize(text)
    if not is_no_space(language):
        return t.split()
    out: list[str] = []
    for w in t.split():
        if _CJK.search(w):
            out.extend(ch for ch in w if not ch.isspace())
        else:
            out.append(w)
    return out


def word_count(text: str | None, language: str | None = None) -> float:
    """Length in words; for languages without spaces, script characters / 2 (about one word per two
    characters; the unit the ASR length filters use) plus any Latin-script words."""
    if not is_no_space(language):
        return float(len((text or "").split()))
    t = normalize(text)
    n_cjk = len(_CJK.findall(t))
    others = [w for w in _CJK.sub(" ", t).split() if w]
    return n_cjk / 2.0 + len(others)


def error_rate(reference: str | None, hypothesis: str | None, language: str | None = None) -> float | None:
    """The language's conventional error rate: CER (spaces removed) for ja/zh/th ..., WER otherwise."""
    if not is_no_space(language):
        return wer(reference, hypothesis)
    return cer(reference, hypothesis, language)


# ---- Japanese readings and speaking-rate units -----------------------------------------------------------
_SMALL_KANA = set("ゃゅょぁぃぅぇぉゎャュョァィゥェォヮ")  # combine with the kana before them: not a mora of their own
_KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa\u30fc]")


def _kakasi():
    try:
        import pykakasi
    except ImportError as e:  # pragma: no cover - declared dependency
        raise ImportError("Japanese readings need pykakasi (pip install pykakasi==2.3.0)") from e
    return _KAKASI.setdefault("k", pykakasi.kakasi())


_KAKASI: dict = {}


def reading(text: str, language: str | None) -> str:
    """What a phonemizer should read: kanji -> hiragana for Japanese (pykakasi's dictionary; espeak-ng's ``ja``
    voice reads kana only), the text unchanged for other languages."""
    if base_language(language) != "ja" or not text:
        return text
    return "".join(part["hira"] for part in _kakasi().convert(text))


def morae(text: str) -> int:
    """Morae of a Japanese text: kana of its reading, small ya/yu/yo/vowels not counted (っ, ん, ー are)."""
    kana = _KANA.findall(reading(text, "ja"))
    return sum(ch not in _SMALL_KANA for ch in kana)


def rate_units(text: str | None, language: str | None) -> tuple[int, str]:
    """(count, unit) for a speaking rate by the language's convention: morae for Japanese, characters
    (syllables) for Chinese and other languages written without spaces, words otherwise."""
    lang = base_language(language)
    if lang == "ja":
        return morae(text or ""), "morae"
    if is_no_space(lang):
        return len(_CJK.findall(text or "")) or len(normalize(text).replace(" ", "")), "characters"
    return len(normalize(text).split()), "words"


def has_cjk(text: str | None) -> bool:
    """Whether ``text`` has characters of a script written without spaces (kana, hanzi/kanji, hangul, Thai ...)."""
    return bool(_CJK.search(text or ""))
