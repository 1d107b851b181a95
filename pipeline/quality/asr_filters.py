"""Reject filters on ASR pseudo-labels (:func:`check` -> reason, detail) and the WER/CER summary of a table.

Reasons: asr_no_speech, asr_empty, language_mismatch, asr_filler_phrase, asr_repetitive,
asr_low_confidence, asr_too_long, asr_too_short; thresholds live in ``ASRConfig``.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from pipeline.backends.asr.base import ASRResult, compression_ratio
from pipeline.core.config import ASRConfig
from pipeline.core.text import normalize

# Phrases Whisper writes on silence, music or noise (subtitle credits and video outros from its web
# training data). Anywhere in the text they mark a hallucination.
FILLER_PHRASES = (
    "subtitles by", "subtitled by", "captions by", "captioned by", "captioning by", "transcribed by",
    "transcription by", "transcript by", "translated by", "translation by", "amara org", "thanks for watching",
    "thank you for watching", "thank you so much for watching", "please subscribe", "like and subscribe",
    "subscribe to my channel", "subscribe to our channel", "don't forget to subscribe", "see you in the next video",
    "untertitel im auftrag des zdf", "untertitel der amara org community", "untertitelung des zdf",
    "untertitel von stephanie geiges", "vielen dank fürs zuschauen", "sous titrage st' 501", "sous titres réalisés par",
    "sous titrage société radio canada", "merci d'avoir regardé", "subtítulos realizados por la comunidad de amara org",
    "subtítulos por la comunidad de amara org", "gracias por ver", "sottotitoli creati dalla comunità amara org",
    "sottotitoli a cura di", "ondertitels ingediend door de amara org gemeenschap", "редактор субтитров",
    "субтитры сделал", "субтитры создавал", "продолжение следует", "ご視聴ありがとうございました", "字幕由amara org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", "mbc 뉴스", "시청해주셔서 감사합니다",
)
# Short outputs that are hallucinations when they are the whole transcript of a clip.
WHOLE_FILLERS = ("you", "thank you", "thank you very much", "thanks", "bye", "bye bye", "the end", "music",
                 "applause", "silence", "laughter", "so", "oh", "hmm", "ah", "um", "uh")
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫♬*]+")
_NO_SPACE_LANGS = {"zh", "ja", "th", "lo", "my", "yue", "km", "bo"}


def _length_units(text: str, language: str | None) -> float:
    """Words, or characters / 2 for languages written without spaces."""
    if (language or "") in _NO_SPACE_LANGS:
        return len(re.sub(r"\s+", "", text)) / 2.0
    return float(len(text.split()))


def max_ngram_repeat(words: Sequence[str], max_n: int = 6) -> tuple[int, str]:
    """Longest back-to-back repetition of one n-gram (n = 1..max_n): (times, ngram)."""
    best, what = 1, ""
    L = len(words)
    for n in range(1, min(max_n, L // 2) + 1):
        for i in range(L - n):
            k, j = 1, i + n
            while j + n <= L and words[j:j + n] == words[i:i + n]:
                k, j = k + 1, j + n
            if k > best:
                best, what = k, " ".join(words[i:i + n])
    return best, what


def _filler(text: str, cfg: ASRConfig) -> str | None:
    norm = normalize(text)
    phrases = FILLER_PHRASES if cfg.hallucination_phrases is None else tuple(cfg.hallucination_phrases)
    padded = f" {norm} "
    for p in phrases:
        q = normalize(p)
        if q and (f" {q} " in padded or (not q.isascii() and q in norm)):
            return p
    core = normalize(_NON_SPEECH.sub(" ", text))
    if not core:
        return "only non-speech annotations"
    if core in WHOLE_FILLERS or (len(set(core.split())) == 1 and core.split()[0] in WHOLE_FILLERS):
        return core
    return None


def _lang(code: str | None) -> str | None:
    if not code:
        return None
    c = code.split("-")[0].split("_")[0].lower()
    return {"jw": "jv"}.get(c, c)


def check(result: ASRResult, duration_s: float, expected_language: str | None,
          cfg: ASRConfig | None = None) -> tuple[str, str] | None:
    """Reject filters; returns (reason, detail) or None when the pseudo-label is kept.

    Reasons: asr_no_speech, asr_empty, language_mismatch, asr_filler_phrase, asr_repetitive,
    asr_low_confidence, asr_too_long, asr_too_short (thresholds in ``ASRConfig``)."""
    cfg = cfg or ASRConfig()
    text = result.text.strip()
    words = normalize(text).split()
    ns, lp = result.no_speech_prob, result.avg_logprob
    if ns is not None and ns > cfg.no_speech_threshold and (not words or (lp is not None and lp < cfg.logprob_threshold)):
        return "asr_no_speech", f"no_speech_prob {ns:.2f} > {cfg.no_speech_threshold} with avg_logprob " + (
            f"{lp:.2f} < {cfg.logprob_threshold}" if lp is not None else "n/a")
    if not words:
        return "asr_empty", "ASR produced no text"
    exp, got = _lang(expected_language), _lang(result.language)
    if exp and got and got != exp and (result.language_prob or 0) >= cfg.min_language_prob:
        return "language_mismatch", f"detected {result.language} (p={result.language_prob:.2f}), profile is {expected_language}"
    filler = _filler(text, cfg)
    if filler:
        return "asr_filler_phrase", f"Whisper filler/hallucination phrase {filler!r} in {text[:120]!r}"
    reps, gram = max_ngram_repeat(words)
    if reps > cfg.max_ngram_repeats:
        return "asr_repetitive", f"{gram!r} repeated {reps} times in a row (> {cfg.max_ngram_repeats})"
    cr = result.compression_ratio if result.compression_ratio is not None else compression_ratio(text)
    if cr > cfg.compression_ratio_threshold:
        return "asr_repetitive", f"compression ratio {cr:.2f} > {cfg.compression_ratio_threshold} (looping hallucination)"
    if lp is not None and lp < cfg.min_avg_logprob:
        return "asr_low_confidence", f"avg_logprob {lp:.2f} < {cfg.min_avg_logprob}"
    units, dur = _length_units(text, result.language), max(duration_s, 0.1)
    if units / dur > cfg.max_words_per_s:
        return "asr_too_long", f"{units:g} words in {duration_s:.1f} s ({units / dur:.1f}/s > {cfg.max_words_per_s}/s): faster than speech"
    if duration_s >= cfg.min_duration_for_rate_s and units / dur < cfg.min_words_per_s:
        return "asr_too_short", f"{units:g} words in {duration_s:.1f} s ({units / dur:.2f}/s < {cfg.min_words_per_s}/s)"
    return None



def summarize_wer(rows) -> dict:
    """WER/CER over a table (pyarrow Table, list of row dicts, or a datasets/pandas-like object with
    ``reference_text`` and ``asr_text``), for the manifest and report.

    ``corpus_wer``/``corpus_cer`` are total edits over total reference words/characters (what papers
    report); ``mean_*``/``median_wer`` are over utterances; only rows with a reference count."""
    import jiwer

    if hasattr(rows, "to_pylist"):
        rows = rows.select([c for c in ("reference_text", "asr_text") if c in rows.column_names]).to_pylist()
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        rows = rows.to_dict("records")
    rows = list(rows)
    pairs = [(normalize(r.get("reference_text")), normalize(r.get("asr_text")) or "<empty>") for r in rows]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref]
    out: dict = {"utterances": len(rows), "with_reference": len(pairs)}
    if not pairs:
        return {**out, "corpus_wer": None, "corpus_cer": None, "mean_wer": None, "median_wer": None, "mean_cer": None,
                "share_exact": None}
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    w = np.array([jiwer.wer(r, h) for r, h in pairs])
    c = np.array([jiwer.cer(r, h) for r, h in pairs])
    return {**out, "corpus_wer": round(float(jiwer.wer(refs, hyps)), 4), "corpus_cer": round(float(jiwer.cer(refs, hyps)), 4),
            "mean_wer": round(float(w.mean()), 4), "median_wer": round(float(np.median(w)), 4),
            "mean_cer": round(float(c.mean()), 4), "share_exact": round(float((w == 0).mean()), 4)}

