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
