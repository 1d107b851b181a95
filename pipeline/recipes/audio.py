"""Audio inputs: a folder of files or a manifest (JSONL, JSON, CSV, TSV) -> ``Source`` records."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv"}


class Source(BaseModel):
    """One input file, as listed by a folder scan or a manifest row."""

    path: str  # absolute path
    rel: str  # path relative to the corpus root (stable across machines)
    text: str | None = None
    speaker: str | None = None
    labels: dict = Field(default_factory=dict)
    # a long file is planned as n_spans units (span 0..n_spans-1), each its own shard; see split_long
    span: int | None = None
    n_spans: int | None = None
    duration_s: float | None = None  # from the file header (probed only for files that may be long)

    @property
    def source_id(self) -> str:
        return hashlib.sha1(self.rel.encode()).hexdigest()[:16]

    def dump(self) -> dict:
        """The plan's record (span fields only for spans, so plans of short files are unchanged)."""
        return self.model_dump(exclude_none=True) | {"text": self.text, "speaker": self.speaker}


class ManifestError(ValueError):
    pass


def _from_record(rec: dict, root: Path, where: str) -> Source:
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: expected a JSON object with a 'path' field, got {type(rec).__name__} {str(rec)[:60]!r}")
    path = rec.get("path") or rec.get("audio") or rec.get("audio_filepath") or rec.get("file")
    if not path:
        raise ManifestError(f"{where}: no 'path' field")
    p = Path(path)
    if not p.is_absolute():
        p = root / p
    text = rec.get("text", rec.get("transcript", rec.get("sentence")))
    if not isinstance(rec.get("labels") or {}, dict):
        raise ManifestError(f"{where}: 'labels' must be a JSON object")
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
                    try:
                        rec["labels"] = json.loads(rec["labels"])
                    except json.JSONDecodeError as e:
                        raise ManifestError(f"{path.name}:{i + 2}: 'labels' is not valid JSON ({e})") from e
                out.append(_from_record(rec, root, f"{path.name}:{i + 2}"))
    else:
        text = path.read_text()
        if path.suffix == ".json":
            try:
                records = json.loads(text)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path.name}: not valid JSON ({e})") from e
            if not isinstance(records, list):
                raise ManifestError(f"{path.name}: a .json manifest must be a JSON array of records")
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


MIN_BYTES_PER_S = 500  # no speech codec in use goes below 4 kbit/s: a smaller file cannot be long


def split_long(sources: list[Source], span_s: float) -> list[Source]:
    """Plan files longer than ``span_s`` as ``ceil(duration / span_s)`` spans, each a unit of work of its
    own (decoded, segmented and processed in memory that does not grow with the file). Only files big
    enough to possibly be that long have their header probed."""
    from pipeline.core.audio import probe_duration

    out: list[Source] = []
    for s in sources:
        try:
            big = span_s > 0 and Path(s.path).stat().st_size > span_s * MIN_BYTES_PER_S
        except OSError:
            big = False
        dur = probe_duration(s.path) if big else None
        if dur is None or dur <= span_s:
            out.append(s)
            continue
        n = int(-(-dur // span_s))
        out += [s.model_copy(update={"span": j, "n_spans": n, "duration_s": round(dur, 6)}) for j in range(n)]
    return out
