"""Atomic Parquet parts: write to a temp file in the same folder, fsync, then rename."""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def part_name(k: int, prefix: str = "part") -> str:
    return f"{prefix}-{k:05d}.parquet"


def write_atomic(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd", row_group_size=256)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read(path: Path) -> pa.Table:
    return pq.read_table(path)


def clean_temps(folder: Path) -> int:
    """Remove temp files left by a killed writer."""
    n = 0
    if folder.exists():
        for p in folder.rglob(".*.tmp-*"):
            p.unlink(missing_ok=True)
            n += 1
    return n
