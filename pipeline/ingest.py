"""Ingest: discover sources (folder or manifest), decode, resample, VAD-segment into utterances."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .audio import AUDIO_EXTENSIONS, AudioError, encode_flac, load, rms_dbfs
from .config import IngestConfig

MANIFEST_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv"}


class Source(BaseModel):
    """One input file, as listed by a folder scan or a manifest row."""

    path: str  # absolute path
    rel: str  # path relative to the corpus root (stable across machines)
    text: str | None = None
    speaker: str | None = None
    labels: dict = Field(default_factory=dict)

    @property
    def source_id(self) -> str:
        return hashlib.sha1(self.rel.encode()).hexdigest()[:16]


class ManifestError(ValueError):
    pass


def _from_record(rec: dict, root: Path, where: str) -> Source:
    path = rec.get("path") or rec.get("audio") or rec.get("audio_filepath") or rec.get("file")
    if not path:
        raise ManifestError(f"{where}: no 'path' field")
    p = Path(path)
    if not p.is_absolute():
        p = root / p
    text = rec.get("text", rec.get("transcript", rec.get("sentence")))
    labels = dict(rec.get("labels") or {})
    for k, v in rec.items():
        if k not in {"path", "audio", "audio_filepath", "file", "text", "transcript", "sentence", "speaker", "labels"}:
            labels[k] = v
    speaker = rec.get("speaker")
    return Source(path=str(p), rel=str(Path(path)) if not Path(path).is_absolute() else str(p),
                  text=text or None, speaker=str(speaker) if speaker is not None else None, labels=labels)


def read_manifest(path: Path) -> list[Source]:
    root = path.parent
    out: list[Source] = []
    if path.suffix in {".csv", ".tsv"}:
        with open(path, newline="") as f:
            for i, rec in enumerate(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")):
                rec = {k: v for k, v in rec.items() if v not in (None, "")}
                if "labels" in rec:
                    rec["labels"] = json.loads(rec["labels"])
                out.append(_from_record(rec, root, f"{path.name}:{i + 2}"))
    else:
        text = path.read_text()
        if path.suffix == ".json":
            records = json.loads(text)
        else:
            records = []
            for i, line in enumerate(text.splitlines()):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ManifestError(f"{path.name}:{i + 1}: not valid JSON ({e})") from e
        out = [_from_record(r, root, f"{path.name}:{i + 1}") for i, r in enumerate(records)]
    return out


def discover(input_path: Path) -> list[Source]:
    """List the sources of a corpus: a manifest file, or every file under a folder (sorted).

    Every file in a folder is listed, audio or not, so that non-audio files are accounted for
    (they are rejected as ``not_audio`` by ingest) rather than silently dropped.
    """
    if not input_path.exists():
        raise FileNotFoundError(f"input {input_path} does not exist")
    if input_path.is_file():
        if input_path.suffix.lower() in MANIFEST_SUFFIXES:
            return read_manifest(input_path)
        return [Source(path=str(input_path), rel=input_path.name)]
    files = sorted(p for p in input_path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(input_path).parts))
    return [Source(path=str(p), rel=str(p.relative_to(input_path))) for p in files]


class SileroVAD:
    """silero-vad (ONNX weights shipped in the silero-vad wheel); loaded once per worker."""

    name = "silero-vad-6.2.3-onnx"

    def __init__(self, threshold: float = 0.5, min_silence_ms: int = 300, speech_pad_ms: int = 100):
        from silero_vad import load_silero_vad

        self.model = load_silero_vad(onnx=True)
        self.threshold, self.min_silence_ms, self.speech_pad_ms = threshold, min_silence_ms, speech_pad_ms

    def speech(self, audio: np.ndarray, sr: int) -> list[tuple[float, float]]:
        import torch
        from silero_vad import get_speech_timestamps

        ts = get_speech_timestamps(
            torch.from_numpy(audio), self.model, threshold=self.threshold, sampling_rate=sr,
            min_silence_duration_ms=self.min_silence_ms, speech_pad_ms=self.speech_pad_ms,
        )
        return [(t["start"] / sr, t["end"] / sr) for t in ts]


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


class Ingest:
    """Decode + validate + segment the sources of one shard into utterance rows."""

    name = "ingest"

    def __init__(self, cfg: IngestConfig):
        self.cfg = cfg
        self.vad = SileroVAD(cfg.vad.threshold, cfg.vad.min_silence_ms, cfg.vad.speech_pad_ms)

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
