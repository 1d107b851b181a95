"""What every ASR backend shares: the ASRResult record, the ASRBackend protocol, Whisper constants, and
the decoding helpers the Whisper backends use (timestamp-token segments, Whisper's temperature-fallback
rule and last-resort choice, result building, batching)."""
from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from pipeline.core.audio import SAMPLE_RATE, resample
from pipeline.core.config import ASRConfig

N_FRAMES = 3000  # one Whisper window: 30 s of 10 ms Mel frames
TIME_PRECISION = 0.02  # seconds per timestamp token
MAX_WINDOW_S = 30.0
MIN_SAMPLES = 400  # one 25 ms analysis window

__all__ = ["ASRBackend", "ASRResult", "MAX_WINDOW_S", "MIN_SAMPLES", "N_FRAMES", "SAMPLE_RATE", "TIME_PRECISION",
           "build_result", "chunks", "compression_ratio", "last_resort", "needs_fallback", "split_segments", "to_16k"]


@dataclass
class ASRResult:
    text: str
    language: str | None
    language_prob: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    segments: list[dict] = field(default_factory=list)  # [{start, end, text}] (s, within the clip)
    words: list[dict] = field(default_factory=list)  # [{word, start, end, p}]
    temperature: float | None = None  # decoding temperature that produced the text (> 0: fallback was needed)


@runtime_checkable
class ASRBackend(Protocol):
    """One result per clip, in order; ``name:model_id`` is written to the ``asr_model`` column."""

    name: str
    model_id: str

    @classmethod
    def from_config(cls, cfg: ASRConfig, **context) -> "ASRBackend": ...

    def transcribe_batch(self, audios: list[np.ndarray], sample_rate: int, language: str | None = None) -> list[ASRResult]: ...


def compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return len(b) / len(gzip.compress(b)) if b else 0.0


def to_16k(audios: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
    """Contiguous float32 clips at 16 kHz (pipeline.core.audio.resample where the rate differs)."""
    if sample_rate == SAMPLE_RATE:
        return [np.ascontiguousarray(a, dtype=np.float32) for a in audios]
    return [np.ascontiguousarray(resample(np.asarray(a, dtype=np.float32), sample_rate, SAMPLE_RATE), dtype=np.float32)
            for a in audios]


def split_segments(tokens: Sequence[int], timestamp_begin: int, eot: int, decode: Callable[[list[int]], str],
                   duration: float) -> list[dict]:
    """Whisper timestamp tokens -> segments [{start, end, text, tokens}] (times in s, within the window).

    ``<|t0|> text <|t1|>`` is one segment; a text run with no closing timestamp ends at ``duration``;
    tokens without any timestamp make one segment over the whole clip."""
    segs: list[dict] = []
    start: float | None = None
    text_toks: list[int] = []
    any_ts = False
    for t in tokens:
        if t >= timestamp_begin:
            any_ts = True
            ts = (t - timestamp_begin) * TIME_PRECISION
            if text_toks:
                segs.append({"start": start if start is not None else 0.0, "end": ts, "tokens": text_toks})
                text_toks = []
                start = None
            else:
                start = ts
        elif t < eot:
            text_toks.append(t)
    if text_toks:
        segs.append({"start": start if start is not None else 0.0, "end": duration, "tokens": text_toks})
    out = []
    for s in segs:
        text = decode(s["tokens"])
        if not text.strip():
            continue
        end = min(max(s["end"], s["start"]), max(duration, s["start"]))
        out.append({"start": s["start"], "end": end, "text": text, "tokens": s["tokens"]})
    return out


def last_resort(cands: list, cfg: ASRConfig, cr=lambda c: c[3], logprob=lambda c: c[0]):
    """Every temperature failed: the most likely candidate that is not too repetitive (else the most likely)."""
    ok = [c for c in cands if cr(c) <= cfg.compression_ratio_threshold] or cands
    return max(ok, key=logprob)


def needs_fallback(cr: float, avg_logprob: float, no_speech: float | None, cfg: ASRConfig) -> bool:
    """Whisper's temperature-fallback rule: too repetitive or too unlikely, unless it is silence."""
    bad = cr > cfg.compression_ratio_threshold or avg_logprob < cfg.logprob_threshold
    silent = no_speech is not None and no_speech > cfg.no_speech_threshold and avg_logprob < cfg.logprob_threshold
    return bad and not silent


def build_result(text: str, language, language_prob, avg_logprob, no_speech, segments: list[dict], words: list[dict],
                 temperature) -> ASRResult:
    """An ASRResult with plain floats, rounded times, stripped texts and the compression ratio of ``text``."""
    text = text.strip()
    return ASRResult(
        text=text, language=language, language_prob=None if language_prob is None else float(language_prob),
        avg_logprob=None if avg_logprob is None else float(avg_logprob),
        no_speech_prob=None if no_speech is None else float(no_speech),
        compression_ratio=compression_ratio(text),
        segments=[{"start": round(float(s["start"]), 2), "end": round(float(s["end"]), 2), "text": s["text"].strip()}
                  for s in segments if s["text"].strip()],
        words=[{"word": w["word"].strip(), "start": round(float(w["start"]), 2), "end": round(float(w["end"]), 2),
                "p": round(float(w["probability"]), 3)} for w in words if w["word"].strip()],
        temperature=None if temperature is None else float(temperature),
    )


def chunks(order: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(order), max(1, size)):
        yield order[i:i + max(1, size)]
