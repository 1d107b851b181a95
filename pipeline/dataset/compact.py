"""Final table parts sized for readers: a streaming compaction of the work shards (issue 20).

A final part (``<table>/part-NNNNN.parquet``) holds consecutive shards and is closed at a shard boundary once
it has ``export.part_rows`` rows or ``export.part_mb`` MiB (sizes read from the work parts' footers and file
sizes, before anything is loaded). It is written by streaming: one shard's rows in memory at a time, buffered
into row groups of ``export.row_group_rows`` rows / ``export.row_group_mb`` MiB, to a temp file that is synced
and renamed (atomic; page checksums as every part of the run).

``_work/export/<table>.json`` records, per part, a fingerprint of what it was made from (its shards' input
files, their sizes and mtimes, and a content key: the stages exported, the dataset-wide bins, the dedup
drops). A part whose file is whole and whose fingerprint is unchanged is kept; a torn, missing or outdated one
is rewritten, so an export after a crash or after new shards (incremental runs) redoes only what changed.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import schema, store


@dataclass
class Job:
    """One shard's contribution to a table: ``load()`` gives its rows (checked, binned, deduplicated)."""

    k: int
    load: Callable[[], pa.Table]
    inputs: list[Path] = field(default_factory=list)
    rows_hint: int | None = None  # for jobs without input files (e.g. rejects made at export)
    key: str = ""  # extra fingerprint (what the rows depend on besides the inputs)


def _size(job: Job) -> tuple[int, int, list[str]]:
    """(rows, bytes, fingerprint items) of a job from its inputs' footers; a footer that cannot be read is
    loaded through ``job.load`` (which repairs a damaged work part) and looked at again."""
    if job.rows_hint is not None:
        return job.rows_hint, 0, [f"hint:{job.rows_hint}"]
    for attempt in range(2):
        rows, nbytes, items = 0, 0, []
        try:
            for p in job.inputs:
                if not p.exists():
                    items.append(f"{p.name}:-")
                    continue
                st = p.stat()
                rows += pq.read_metadata(p).num_rows
                nbytes += st.st_size
                items.append(f"{p.parent.name}/{p.name}:{st.st_size}:{st.st_mtime_ns}")
            return rows, nbytes, items
        except (OSError, pa.ArrowException):
            if attempt:
                raise
            job.load()
    raise AssertionError("unreachable")


def plan_parts(sizes: list[tuple[int, int]], part_rows: int, part_bytes: float) -> list[list[int]]:
    """Indices of jobs per part: consecutive, empty jobs left out, a part closed once it reaches a target."""
    parts, cur, rows, nbytes = [], [], 0, 0
    for i, (r, b) in enumerate(sizes):
        if r == 0:
            continue
        cur.append(i)
        rows, nbytes = rows + r, nbytes + b
        if rows >= part_rows or nbytes >= part_bytes:
            parts.append(cur)
            cur, rows, nbytes = [], 0, 0
    if cur:
        parts.append(cur)
    return parts


def _write_streaming(table: str, jobs: list[Job], path: Path, rg_rows: int, rg_bytes: float) -> int:
    """Stream the jobs' rows into ``path`` (atomic); returns the row count (0: nothing written)."""
    sch = schema.to_table(table, []).schema
    tmp = store.temp_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, buf, n_buf, b_buf, total = None, [], 0, 0, 0

    def flush():
        nonlocal buf, n_buf, b_buf, writer
        if not buf:
            return
        t = pa.concat_tables(buf)
        writer = writer or pq.ParquetWriter(tmp, sch, compression="zstd", write_page_checksum=True)
        writer.write_table(t, row_group_size=max(t.num_rows, 1))
        buf, n_buf, b_buf = [], 0, 0

    try:
        for job in jobs:
            t = schema.conform(table, job.load())
            if not t.num_rows:
                continue
            buf.append(t)
            n_buf, b_buf, total = n_buf + t.num_rows, b_buf + t.nbytes, total + t.num_rows
            if n_buf >= rg_rows or b_buf >= rg_bytes:
                flush()
        flush()
        if writer is None:
            return 0
        writer.close()
        writer = None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return total
    except (OSError, pa.ArrowException) as e:
        no_space = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or "No space left" in str(e)
        raise store.WriteFailed(getattr(e, "errno", None) or errno.EIO,
                                f"cannot write {path}: {'the disk is full' if no_space else f'{type(e).__name__}: {e}'}") from e
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)


def write_table(run, table: str, jobs: list[Job], content_key: str = "") -> dict:
    """Write ``<run.dir>/<table>/part-*.parquet`` from ``jobs`` (in shard order). Returns counts."""
    cfg = run.profile.export
    sizes, items = [], []
    for j in jobs:
        r, b, it = _size(j)
        sizes.append((r, b))
        items.append(it)
    groups = plan_parts(sizes, cfg.part_rows, cfg.part_mb * 2**20)
    folder = run.dir / table
    index_path = run.work / "export" / f"{table}.json"
    try:
        old = json.loads(index_path.read_text()).get("parts", [])
    except (OSError, ValueError):
        old = []
    parts, written = [], 0
    for i, g in enumerate(groups):
        fp = hashlib.sha256("|".join([content_key] + [f"{jobs[x].k}:{jobs[x].key}:{','.join(items[x])}" for x in g]).encode()).hexdigest()
        name = store.part_name(i)
        out = folder / name
        keep = i < len(old) and old[i].get("fp") == fp and (
            (old[i].get("rows") == 0 and not out.exists()) or (out.exists() and store.check(out) is None))
        if not keep:
            if out.exists() and (bad := store.check(out)) is not None:
                store.quarantine(out, f"final {table} part {i}: {bad}")  # a torn final part is rewritten
            rows = _write_streaming(table, [jobs[x] for x in g], out, cfg.row_group_rows, cfg.row_group_mb * 2**20)
            if rows == 0:
                out.unlink(missing_ok=True)
            written += 1
        else:
            rows = old[i]["rows"]
        parts.append({"name": name, "fp": fp, "rows": rows, "shards": [jobs[g[0]].k, jobs[g[-1]].k]})
    names = {p["name"] for p in parts if p["rows"]}
    for f in folder.glob("part-*.parquet"):  # parts of an earlier layout (more parts, per-shard parts)
        if f.name not in names:
            f.unlink()
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_name(f".{index_path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"parts": parts}, indent=1))
    tmp.replace(index_path)
    return {"table": table, "parts": len(names), "rewritten": written, "rows": sum(p["rows"] for p in parts)}
