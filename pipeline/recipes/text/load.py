"""Loading a corpus file (JSON or JSONL, UTF-8) and detecting its format from the records."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_file(path: Path) -> tuple[Any, list[tuple[int, Any]] | None, list[tuple[int, int, str]]]:
    """Return (whole-file JSON or None, JSONL rows as (index, obj) or None, bad lines as (index, line_no, error))."""
    if not path.is_file():
        raise ValueError(f"text corpus {path} does not exist or is not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"text corpus {path} cannot be read: {e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"text corpus {path} is not UTF-8 text ({e})") from e
    if not text.strip():
        raise ValueError(f"text corpus {path} is empty")
    try:
        return json.loads(text), None, []
    except json.JSONDecodeError as whole_err:
        rows: list[tuple[int, Any]] = []
        bad: list[tuple[int, int, str]] = []
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        for idx, (n, line) in enumerate(lines):  # index among non-blank lines: stable ids, bad lines included
            try:
                rows.append((idx, json.loads(line)))
            except json.JSONDecodeError as e:
                bad.append((idx, n, e.msg))
        if not rows:
            raise ValueError(
                f"text corpus {path} is neither JSON nor JSONL (JSON error: {whole_err.msg} at line "
                f"{whole_err.lineno} column {whole_err.colno})"
            ) from whole_err
        return None, rows, bad


def _kind(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return None
    if "Instances" in rec and "Definition" in rec:
        return "sni"
    if "query" in rec and ("passages" in rec or "passage" in rec or "answers" in rec):
        return "marco"
    if "instruction" in rec:
        return "alpaca"
    return None


def columns_to_rows(d: dict) -> list[dict] | None:
    """MS MARCO v2.1 official layout: {"query": {"0": q, ...}, "answers": {"0": [...]}, ...} -> rows."""
    if not isinstance(d.get("query"), dict) or not all(isinstance(v, dict) for v in d.values()):
        return None
    keys = list(d["query"].keys())
    return [{col: d[col].get(k) for col in d} for k in keys]


def detect_format(data: Any, rows: list[tuple[int, Any]] | None) -> str:
    if data is not None:
        if isinstance(data, dict):
            if columns_to_rows(data) is not None:
                return "marco"
            k = _kind(data)
            if k:
                return k
            raise ValueError(f"unrecognised JSON object with keys {sorted(data)[:8]}")
        if isinstance(data, list):
            sample = data[:50]
        else:
            raise ValueError(f"unrecognised JSON top-level value of type {type(data).__name__}")
    else:
        sample = [obj for _, obj in (rows or [])[:50]]
    votes: dict[str, int] = {}
    for rec in sample:
        k = _kind(rec)
        if k:
            votes[k] = votes.get(k, 0) + 1
    if not votes:
        raise ValueError("no record looks like Alpaca ({instruction, input, output}), Super-NaturalInstructions "
                         "({Definition, Instances}) or MS MARCO ({query, passages, answers})")
    return max(votes, key=votes.get)
