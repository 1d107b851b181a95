"""ASR stage: pseudo-label every utterance of a shard in batches; filtered ones go to rejects with the reason.

Also the utterance columns of one result (``result_columns``) and ``enrich`` (language, speaking rate and
text emotion from the ASR columns), which binning runs again."""
from __future__ import annotations

import json
import math
from functools import lru_cache

from pipeline.backends.asr import load_asr
from pipeline.backends.asr.base import ASRBackend, ASRResult
from pipeline.core.audio import decode_bytes
from pipeline.core.config import ASRConfig, Profile
from pipeline.core.rows import reject
from pipeline.core.text import cer, wer
from pipeline.quality.asr_filters import check


@lru_cache(maxsize=None)
def _shared(cfg_json: str) -> ASRBackend:
    return load_asr(ASRConfig.model_validate_json(cfg_json))


def shared_asr(cfg: ASRConfig) -> ASRBackend:
    """One ASR model per process and config, shared by the asr stage and the TTS round-trip gate."""
    return _shared(cfg.model_dump_json())


class AsrStage:
    name = "asr"
    reads = "metadata"
    writes = "utterances"

    def __init__(self, backend: ASRBackend, profile: Profile):
        self.backend, self.profile = backend, profile

    @classmethod
    def from_profile(cls, profile: Profile) -> "AsrStage":
        return cls(shared_asr(profile.asr), profile)

    def process(self, rows: list[dict]) -> tuple[list[dict], list[dict]]:
        return transcribe(self.backend, rows, self.profile)


def transcribe(backend: ASRBackend, rows: list[dict], profile: Profile) -> tuple[list[dict], list[dict]]:
    if not rows:
        return [], []
    decoded = [decode_bytes(r["audio"]["bytes"]) for r in rows]
    rates = {sr for _, sr in decoded}
    if len(rates) == 1:
        results = backend.transcribe_batch([a for a, _ in decoded], rates.pop(), profile.asr.language)
    else:  # mixed sample rates (not produced by ingest): one batch per rate
        results = [None] * len(rows)
        for sr in rates:
            idx = [i for i, (_, s) in enumerate(decoded) if s == sr]
            for i, r in zip(idx, backend.transcribe_batch([decoded[i][0] for i in idx], sr, profile.asr.language)):
                results[i] = r
    kept, rejects = [], []
    for row, res in zip(rows, results):
        cols = result_columns(res, backend, row.get("reference_text"), profile.language)
        bad = check(res, row["duration_s"], profile.language, profile.asr)
        if bad:
            reason, detail = bad
            rejects.append(reject(row["id"], row, "asr", reason, detail, raw=res.text))
        else:
            kept.append({**row, **cols})
    # what the transcript makes known (language, speaking rate, text emotion) before the LLM stage sees the rows
    return enrich(kept, profile.metadata), rejects


def result_columns(r: ASRResult, backend: ASRBackend, reference: str | None, language: str | None = None) -> dict:
    """The utterance columns of one ASR result (WER/CER against ``reference`` where there is one; CER without
    spaces for ``language`` ja, zh, ...: pipeline.core.text.cer)."""
    return {
        "asr_text": r.text, "asr_language": r.language, "asr_language_prob": r.language_prob,
        "asr_avg_logprob": r.avg_logprob, "asr_no_speech_prob": r.no_speech_prob,
        "asr_compression_ratio": r.compression_ratio, "asr_segments_json": json.dumps(r.segments, ensure_ascii=False),
        "asr_words_json": json.dumps(r.words, ensure_ascii=False),
        "asr_model": f"{backend.name}:{backend.model_id}", "wer": wer(reference, r.text), "cer": cer(reference, r.text, language),
    }


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def enrich(rows: list[dict], cfg=None) -> list[dict]:
    """Fill language / speaking rate / text emotion from the ASR columns where still empty (in place).

    Run at the end of this stage and again at export (a no-op then)."""
    from pipeline.backends.metadata.text import text_columns
    from pipeline.core.config import MetadataConfig

    cfg = cfg or MetadataConfig()
    for r in rows:
        if r.get("language") is None and r.get("asr_language"):
            r["language"], r["language_score"] = r["asr_language"], _finite(r.get("asr_language_prob"))
            r["language_source"] = r.get("asr_model") or "asr"
    todo = [r for r in rows if r.get("asr_text") and r.get("speech_span_s")
            and (r.get("speaking_rate_pps") is None
                 or (cfg.emotion_backend == "text-nrc" and r.get("emotion") is None))]
    if todo:
        cols = text_columns([r["asr_text"] for r in todo], [r["speech_span_s"] for r in todo],
                            [r.get("language") or r.get("asr_language") for r in todo], source="asr_text",
                            emotion=cfg.emotion_backend == "text-nrc", default_voice=cfg.phonemizer_voice)
        for r, c in zip(todo, cols):
            c.pop("metadata_errors", None)
            if r.get("speaking_rate_pps") is None and c.get("speaking_rate_pps") is not None:
                for k in ("n_words", "n_phonemes", "speaking_rate_wps", "speaking_rate_pps", "speaking_rate_source"):
                    r[k] = c[k]
            if r.get("emotion") is None and c.get("emotion") is not None:
                for k in ("emotion", "emotion_score", "emotion_source"):
                    r[k] = c[k]
    return rows
