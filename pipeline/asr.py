"""ASR pseudo-labels: one small protocol, faster-whisper backend (embedded Whisper base on CPU,
any CTranslate2 Whisper such as large-v3 on GPU), plus reject filters with reasons."""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .config import ASRConfig
from .models import resolve
from .textnorm import wer


@dataclass
class ASRResult:
    text: str
    language: str | None
    language_prob: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    segments: list[dict] = field(default_factory=list)


class ASRBackend(Protocol):
    name: str
    model_id: str

    def transcribe_batch(self, audios: list[np.ndarray], sample_rate: int, language: str | None = None) -> list[ASRResult]: ...


def compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return len(b) / len(gzip.compress(b)) if b else 0.0


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, cfg: ASRConfig):
        from faster_whisper import WhisperModel

        self.cfg = cfg
        self.model_id = cfg.model
        self.model = WhisperModel(resolve(cfg.model), device=cfg.device, compute_type=cfg.compute_type,
                                  cpu_threads=cfg.cpu_threads)

    def transcribe_one(self, audio: np.ndarray, language: str | None) -> ASRResult:
        segs, info = self.model.transcribe(
            audio, language=language, beam_size=self.cfg.beam_size, vad_filter=False,
            condition_on_previous_text=False, without_timestamps=False,
        )
        segs = list(segs)
        text = " ".join(s.text.strip() for s in segs).strip()
        dur = np.array([max(s.end - s.start, 1e-3) for s in segs]) if segs else np.array([])
        return ASRResult(
            text=text,
            language=info.language,
            language_prob=float(info.language_probability),
            avg_logprob=float(np.average([s.avg_logprob for s in segs], weights=dur)) if segs else None,
            no_speech_prob=float(max(s.no_speech_prob for s in segs)) if segs else None,
            compression_ratio=compression_ratio(text),
            segments=[{"start": round(s.start, 2), "end": round(s.end, 2), "text": s.text.strip()} for s in segs],
        )

    def transcribe_batch(self, audios, sample_rate, language=None):
        assert sample_rate == 16000, "Whisper expects 16 kHz audio"
        return [self.transcribe_one(a, language) for a in audios]


def load_asr(cfg: ASRConfig) -> ASRBackend:
    if cfg.backend == "faster-whisper":
        return FasterWhisperBackend(cfg)
    raise ValueError(f"unknown ASR backend {cfg.backend!r}")


def check(result: ASRResult, duration_s: float, expected_language: str | None) -> tuple[str, str] | None:
    """Reject filters; returns (reason, detail) or None when the pseudo-label is kept."""
    words = result.text.split()
    if not words:
        return "asr_empty", "ASR produced no text"
    if result.no_speech_prob is not None and result.avg_logprob is not None and result.no_speech_prob > 0.6 and result.avg_logprob < -1.0:
        return "asr_no_speech", f"no_speech_prob {result.no_speech_prob:.2f} with avg_logprob {result.avg_logprob:.2f}"
    if result.compression_ratio and result.compression_ratio > 2.4:
        return "asr_repetitive", f"compression ratio {result.compression_ratio:.2f} > 2.4 (looping hallucination)"
    if result.avg_logprob is not None and result.avg_logprob < -1.5:
        return "asr_low_confidence", f"avg_logprob {result.avg_logprob:.2f} < -1.5"
    if expected_language and result.language and result.language != expected_language and (result.language_prob or 0) > 0.5:
        return "language_mismatch", f"detected {result.language} (p={result.language_prob:.2f}), profile is {expected_language}"
    if len(words) / max(duration_s, 0.1) > 7.0:
        return "asr_too_long", f"{len(words)} words in {duration_s:.1f} s is faster than any speech"
    return None


def result_columns(r: ASRResult, backend: ASRBackend, reference: str | None) -> dict:
    return {
        "asr_text": r.text, "asr_language": r.language, "asr_language_prob": r.language_prob,
        "asr_avg_logprob": r.avg_logprob, "asr_no_speech_prob": r.no_speech_prob,
        "asr_compression_ratio": r.compression_ratio, "asr_segments_json": json.dumps(r.segments, ensure_ascii=False),
        "asr_model": f"{backend.name}:{backend.model_id}", "wer": wer(reference, r.text),
    }
