"""Text instruction corpora -> ``TextInstruction`` records (local files only, format detected from content).

Formats, one reader module each: ``alpaca`` (Stanford Alpaca), ``sni`` (Super-NaturalInstructions task files),
``marco`` (MS MARCO-style QA); loading and format detection are in ``load``.

``read_corpus`` never raises on a bad *record*: it is returned as a reject ``(id, reason, detail)``. A file that
cannot be read or recognised raises ``ValueError`` with the reason. Text normalisation for speech is in
``pipeline.recipes.speakable``.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.recipes.text import alpaca, marco, sni
from pipeline.recipes.text.base import FORMATS, Format, Reject, TextInstruction
from pipeline.recipes.text.load import columns_to_rows, detect_format, load_file

__all__ = ["FORMATS", "Format", "Reject", "TextInstruction", "detect_format", "read_corpus"]


def read_corpus(path: str | Path, format: Format = "auto", source: str | None = None
                ) -> tuple[list[TextInstruction], list[Reject]]:
    """Read a local text instruction corpus; returns (records, rejects).

    ``source`` names the corpus in ids and records (default: the file name without extension). Ids are
    ``<source>:<record id>`` when the record has one (Alpaca ``id``, MS MARCO ``query_id``/``id``), else
    ``<source>:<index>``; Super-NaturalInstructions instance ids are used unchanged (they are globally unique).
    """
    path = Path(path)
    data, rows, bad_lines = load_file(path)
    fmt = detect_format(data, rows) if format == "auto" else format
    if fmt not in FORMATS:
        raise ValueError(f"unknown text corpus format {fmt!r}; expected one of {', '.join(FORMATS)} or 'auto'")
    src = source or path.name.split(".")[0]
    rejects = [Reject(f"{src}:{idx}", "bad_json", f"line {n}: {msg}") for idx, n, msg in bad_lines]
    if fmt == "sni":
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a Super-NaturalInstructions task file must be one JSON object")
        recs, rej = sni.parse(data, src)
        return recs, rejects + rej
    if data is not None:
        if isinstance(data, dict):
            data = columns_to_rows(data) or [data]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of records")
        records = [(str(i), r) for i, r in enumerate(data)]
    else:
        records = [(str(i), r) for i, r in rows]
    recs, rej = (alpaca.parse if fmt == "alpaca" else marco.parse)(records, src)
    return recs, rejects + rej
