"""Ingest stage: decode, resample, validate and VAD-segment input files (``Source``) into utterance rows.

A file longer than ``ingest.long_file_span_s`` is planned as spans (pipeline.recipes.audio.split_long),
one shard each. A span is decoded by seeking (``load_window``) between two cut points found in silences
near its nominal boundaries, so memory does not depend on the file's length; ``whole_file_segments`` is
the one-decode reference the windowed result matches within VAD boundary tolerance.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.backends.vad import load_vad
from pipeline.core.audio import AUDIO_EXTENSIONS, AudioError, encode_flac, load, load_window, rms_dbfs
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


CUT_SEARCH_S = 20.0  # a span boundary is cut in the widest silence within +-20 s of its nominal point
SPAN_INDEX = 10000  # segment_index of a span's segment: span * SPAN_INDEX + index within the span


def nominal_cuts(duration: float, n: int) -> list[float]:
    return [j * duration / n for j in range(n + 1)]


def cut_point(regions: list[tuple[float, float]], a: float, lo: float, hi: float) -> float:
    """Where to cut near ``a``: the middle of the widest silence between speech ``regions`` inside
    ``[lo, hi]`` (a silence within 50 ms of the widest counts as a tie; the one nearest ``a`` wins);
    ``a`` itself when the window is all speech or all silence."""
    rs = sorted((max(lo, s), min(hi, e)) for s, e in regions if e > lo and s < hi)
    if not rs:
        return a
    gaps = [(rs[i][1], rs[i + 1][0]) for i in range(len(rs) - 1) if rs[i + 1][0] > rs[i][1]]
    if rs[0][0] > lo:
        gaps.append((lo, rs[0][0]))
    if rs[-1][1] < hi:
        gaps.append((rs[-1][1], hi))
    if not gaps:
        return a
    widest = max(e - s for s, e in gaps)
    s, e = min((g for g in gaps if g[1] - g[0] >= widest - 0.05), key=lambda g: abs((g[0] + g[1]) / 2 - a))
    return (s + e) / 2


def span_segments(regions: list[tuple[float, float]], c0: float, c1: float, max_s: float) -> list[tuple[float, float]]:
    """Segments of the span ``[c0, c1)`` of a long file (absolute times): ``plan_segments`` over the
    speech regions that overlap the span (clipped to it). The same function serves the windowed ingest
    and a whole-file reference, so both cut a long file the same way up to VAD context."""
    rs = [(max(s, c0) - c0, min(e, c1) - c0) for s, e in regions if s < c1 and e > c0]
    if not rs:
        return []
    return [(c0 + s, c0 + e) for s, e in plan_segments(rs, max(c1 - c0, max_s + 1e-6), max_s)]


def whole_file_segments(audio: np.ndarray, sr: int, vad, n_spans: int, max_s: float) -> list[list[tuple[float, float]]]:
    """Reference: the spans' segments from one decode and one VAD pass over the whole file (what the
    windowed ingest must reproduce within VAD boundary tolerance; memory grows with the file)."""
    duration = audio.size / sr
    regions = vad.speech(audio, sr)
    a = nominal_cuts(duration, n_spans)
    cuts = [0.0] + [cut_point(regions, x, x - CUT_SEARCH_S, x + CUT_SEARCH_S) for x in a[1:-1]] + [duration]
    return [span_segments(regions, cuts[j], cuts[j + 1], max_s) for j in range(n_spans)]


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
        self._cuts: dict[tuple, float] = {}

    def _cut(self, src: Source, j: int) -> float:
        """Boundary ``j`` of a long file's spans, found from a VAD pass over +-CUT_SEARCH_S around its
        nominal point only (both neighbouring spans compute the same value)."""
        a = nominal_cuts(src.duration_s, src.n_spans)
        if j <= 0 or j >= src.n_spans:
            return 0.0 if j <= 0 else src.duration_s
        key = (src.path, src.duration_s, src.n_spans, j)
        if key not in self._cuts:  # the next span of the same file (often the same worker) reuses it
            self._cuts = {k: v for k, v in self._cuts.items() if k[0] == src.path} | {key: self._find_cut(src, a, j)}
        return self._cuts[key]

    def _find_cut(self, src: Source, a: list[float], j: int) -> float:
        lo, hi = max(0.0, a[j] - CUT_SEARCH_S), min(src.duration_s, a[j] + CUT_SEARCH_S)
        sr = self.cfg.sample_rate
        regions = [(lo + s, lo + e) for s, e in self.vad.speech(load_window(src.path, lo, hi, sr), sr)]
        return cut_point(regions, a[j], lo, hi)

    def process_span(self, src: Source) -> tuple[list[dict], list[dict]]:
        """One span of a long file: decode only ``[cut_j, cut_j+1)`` (seeking), VAD, segment. Memory is
        that of one span whatever the length of the file."""
        cfg, sr, j = self.cfg, self.cfg.sample_rate, src.span
        c0, c1 = self._cut(src, j), self._cut(src, j + 1)
        base = {"source_path": src.rel, "stage": "ingest", "start_s": c0, "end_s": c1}
        span_id = f"{src.source_id}-span{j:03d}"
        try:
            audio = load_window(src.path, c0, c1, sr)
        except AudioError as e:
            return [], [{**base, "id": span_id, "reason": e.reason, "detail": e.detail}]
        regions = [(c0 + s, c0 + e) for s, e in self.vad.speech(audio, sr)] if audio.size else []
        segments = span_segments(regions, c0, c1, cfg.max_duration_s)
        rows, rejects = self._rows(src, audio, c0, regions, segments, j * SPAN_INDEX, whole=False)
        if not rows and not rejects:  # a span without speech is accounted for, not silently dropped
            level = rms_dbfs(audio)
            reason = "silent" if level < cfg.silence_dbfs else "no_speech"
            rejects.append({**base, "id": span_id, "reason": reason,
                            "detail": f"{src.rel} span {j + 1}/{src.n_spans} [{c0:.1f}-{c1:.1f} s]: no speech (RMS {level:.1f} dBFS)"})
        return rows, rejects

    def _rows(self, src: Source, audio: np.ndarray, offset: float, regions, segments, index0: int, whole: bool):
        cfg, sr = self.cfg, self.cfg.sample_rate
        base = {"source_path": src.rel}
        rows, rejects = [], []
        for i, (s, e) in enumerate(segments):
            uid = f"{src.source_id}-{index0 + i:04d}"
            if e - s < cfg.min_duration_s:
                rejects.append({**base, "id": uid, "stage": "ingest", "reason": "too_short", "start_s": s, "end_s": e,
                                "detail": f"{src.rel} [{s:.2f}-{e:.2f}]: {e - s:.2f} s < {cfg.min_duration_s} s"})
                continue
            clip = audio[int(round((s - offset) * sr)): int(round((e - offset) * sr))]
            rows.append({
                "id": uid, "source_id": src.source_id, "source_path": src.rel, "segment_index": index0 + i,
                "start_s": s, "end_s": e, "audio": {"bytes": encode_flac(clip, sr), "path": f"{uid}.flac"},
                "sample_rate": sr, "duration_s": clip.size / sr,
                "speech_ratio": min(1.0, _overlap(regions, s, e) / max(e - s, 1e-9)),
                "speaker": src.speaker, "reference_text": src.text if whole else None,
                "labels_json": json.dumps({**src.labels, **({"source_text": src.text} if src.text and not whole else {})}, ensure_ascii=False) if (src.labels or src.text) else None,
            })
        return rows, rejects

    def process_source(self, src: Source) -> tuple[list[dict], list[dict]]:
        if src.span is not None:
            return self.process_span(src)
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
        return self._rows(src, audio, 0.0, regions, segments, 0, whole)

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
