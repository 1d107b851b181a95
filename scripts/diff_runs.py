#!/usr/bin/env python
"""Compare two output folders of `make dataset` row by row: same tables, same ids, same values.

    python scripts/diff_runs.py data/en /tmp/before/en [--ignore created,stage_seconds]

Compares utterances, instructions and rejects (every column, audio bytes included, rows matched by id),
plus the work shards' row counts; columns that record the run itself (timings, creation time) are
ignored. Exit status 0 when the folders hold the same rows, 1 otherwise, with the differences listed.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pyarrow.parquet as pq

TABLES = ("utterances", "instructions", "rejects")
RUN_KEYS = {"created", "stage_seconds"}  # _manifest.json keys that describe the run, not the data


def rows(folder: Path, table: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for f in sorted((folder / table).glob("part-*.parquet")):
        for r in pq.read_table(f).to_pylist():
            key = r.get("id") or json.dumps(r, sort_keys=True, default=str)
            n = 1
            k = key
            while k in out:  # rejects may repeat an id (one per reason): keep each
                n += 1
                k = f"{key}#{n}"
            out[k] = r
    return out


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def compare(a: Path, b: Path, ignore: set[str], limit: int = 20) -> list[str]:
    diffs: list[str] = []
    for table in TABLES:
        ra, rb = rows(a, table), rows(b, table)
        only_a, only_b = sorted(set(ra) - set(rb)), sorted(set(rb) - set(ra))
        if only_a:
            diffs.append(f"{table}: {len(only_a)} ids only in {a}: {only_a[:5]}")
        if only_b:
            diffs.append(f"{table}: {len(only_b)} ids only in {b}: {only_b[:5]}")
        n_diff = 0
        for k in sorted(set(ra) & set(rb)):
            cols = (set(ra[k]) | set(rb[k])) - ignore
            bad = [c for c in sorted(cols) if not same(ra[k].get(c), rb[k].get(c))]
            if bad:
                n_diff += 1
                if n_diff <= limit:
                    c = bad[0]
                    diffs.append(f"{table}/{k}: {len(bad)} column(s) differ, e.g. {c}: "
                                 f"{str(ra[k].get(c))[:80]!r} vs {str(rb[k].get(c))[:80]!r}")
        print(f"{table:>12}: {len(ra)} vs {len(rb)} rows, {len(set(ra) & set(rb))} common ids, {n_diff} differ")
    ma, mb = (json.loads((d / "_manifest.json").read_text()) if (d / "_manifest.json").exists() else {} for d in (a, b))
    for key in sorted((set(ma) | set(mb)) - RUN_KEYS - ignore):
        va, vb = ma.get(key), mb.get(key)
        if key == "tables":  # sha256 of the shards: equal rows in equal files
            va = {t: v["rows"] for t, v in (va or {}).items()}
            vb = {t: v["rows"] for t, v in (vb or {}).items()}
        if va != vb:
            diffs.append(f"_manifest.json {key}: {str(va)[:120]} vs {str(vb)[:120]}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--ignore", default="", help="comma-separated columns / manifest keys to leave out")
    a = ap.parse_args(argv)
    diffs = compare(a.a, a.b, {c for c in a.ignore.split(",") if c})
    for d in diffs:
        print("DIFF", d)
    print("same rows" if not diffs else f"{len(diffs)} difference(s)")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
