"""Ingest stage: decode, resample, validate and VAD-segment input files (``Source``) into utterance rows."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.backends.vad import load_vad
from pipeline.core.audio import AUDIO_EXTENSIONS, AudioError, encode_flac, load, rms_dbfs
from pipeline.core.config import IngestConfig
from pipeline.recipes.audio import Source


def plan_segments(regions: list[tuple[float, float]], duration: float, max_s: float) -> list[tuple[float, float]]:
    """Group VAD speech regions into segments no longer than ``max_s`` (cut only in silences;
    a single region longer than ``max_s`` is split into equal parts)."""
    if duration <= max_s:
        return [(0.0, duration)]
    pieces: list[tuple[float, float]] = []
    for s, e in regions:
        n = int(np.ceil((e - s) / max_s))
        step = (e - s) / n
        pieces += [(s + i * step, min(e, s + (i + 1) * step)) for i in range(n)]
    segments: list[tuple[float, float]] = []
    for s, e in pieces:
        if segments and e - segments[-1][0] <= max_s:
            segments[-1] = (segments[-1][0], e)
        else:
            segments.append((s, e))
    return segments


def _overlap(regions: list[tuple[float, float]], s: float, e: float) -> float:
    return sum(max(0.0, min(e, b) - max(s, a)) for a, b in regions)


class IngestStage:
    """Decode + validate + segment the sources of one shard into utterance rows."""

    name = "ingest"
    reads = "sources"
    writes = "utterances"

    @classmethod
    def from_profile(cls, profile) -> "IngestStage":
        return cls(profile.ingest)

    def __init__(self, cfg: IngestConfig):
        self.cfg = cfg
        self.vad = load_vad(cfg.vad)

    def process_source(self, src: Source) -> tuple[list[dict], list[dict]]:
        cfg, sr = self.cfg, self.cfg.sample_rate
        base = {"source_path": src.rel}
        if Path(src.path).suffix.lower() not in AUDIO_EXTENSIONS and Path(src.path).suffix.lower() not in {".au", ".caf", ".w64"}:
            return [], [{**base, "id": src.source_id, "stage": "ingest", "reason": "not_audio",
                         "detail": f"{src.rel}: extension {Path(src.path).suffix or '(none)'} is not an audio format"}]
        try:
            audio = load(src.path, sr)
        except AudioError as e:
            return [], [{**base, "id": src.source_id, "stage": "ingest", "reason": e.reason, "detail": e.detail}]
        duration = audio.size / sr
        level = rms_dbfs(audio)
        if level < cfg.silence_dbfs:
            return [], [{**base, "id": src.source_id, "stage": "ingest", "reason": "silent",
                         "detail": f"{src.rel}: RMS {level:.1f} dBFS below {cfg.silence_dbfs} dBFS"}]
        regions = self.vad.speech(audio, sr)
        speech = _overlap(regions, 0.0, duration)
        if speech / duration < cfg.min_speech_ratio:
            return [], [{**base, "id": src.source_id, "stage": "ingest", "reason": "no_speech",
                         "detail": f"{src.rel}: VAD found {speech:.2f} s of speech in {duration:.2f} s"}]
        segments = plan_segments(regions, duration, cfg.max_duration_s)
        whole = len(segments) == 1 and segments[0] == (0.0, duration)
        rows, rejects = [], []
        for i, (s, e) in enumerate(segments):
            uid = f"{src.source_id}-{i:04d}"
            if e - s < cfg.min_duration_s:
                rejects.append({**base, "id": uid, "stage": "ingest", "reason": "too_short", "start_s": s, "end_s": e,
                                "detail": f"{src.rel} [{s:.2f}-{e:.2f}]: {e - s:.2f} s < {cfg.min_duration_s} s"})
                continue
            clip = audio[int(round(s * sr)): int(round(e * sr))]
            rows.append({
                "id": uid, "source_id": src.source_id, "source_path": src.rel, "segment_index": i,
                "start_s": s, "end_s": e, "audio": {"bytes": encode_flac(clip, sr), "path": f"{uid}.flac"},
                "sample_rate": sr, "duration_s": clip.size / sr,
                "speech_ratio": min(1.0, _overlap(regions, s, e) / max(e - s, 1e-9)),
                "speaker": src.speaker, "reference_text": src.text if whole else None,
                "labels_json": json.dumps({**src.labels, **({"source_text": src.text} if src.text and not whole else {})}, ensure_ascii=False) if (src.labels or src.text) else None,
            })
        return rows, rejects

    def process(self, sources: list[Source]) -> tuple[list[dict], list[dict]]:
        rows, rejects = [], []
        for src in sources:
            try:
                r, j = self.process_source(src)
            except Exception as e:  # an unexpected failure on one file must not stop the run
                r, j = [], [{"id": src.source_id, "stage": "ingest", "reason": "error", "source_path": src.rel,
                             "detail": f"{type(e).__name__}: {e}"}]
            rows += r
            rejects += j
        return rows, rejects
