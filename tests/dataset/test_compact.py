"""Streaming compaction of work shards into reader-sized final parts (pipeline/dataset/compact.py)."""
from __future__ import annotations

from types import SimpleNamespace

import pyarrow.parquet as pq

from pipeline.core import schema, store
from pipeline.core.config import load_profile
from pipeline.dataset import compact


def _run(tmp_path, **export):
    p = load_profile("en", **{f"export.{k}": v for k, v in export.items()})
    return SimpleNamespace(profile=p, dir=tmp_path / "out", work=tmp_path / "out" / "_work")


def _jobs(tmp_path, sizes):
    jobs = []
    for k, n in enumerate(sizes):
        path = tmp_path / "work" / store.part_name(k, "rejects")
        store.write_atomic(schema.to_table("rejects", [{"id": f"{k}-{i}", "stage": "ingest", "reason": "r", "detail": "d"}
                                                      for i in range(n)]), path)
        jobs.append(compact.Job(k, (lambda path=path: store.read(path)), [path]))
    return jobs


def test_plan_parts_closes_at_shard_boundaries():
    assert compact.plan_parts([(3, 0), (0, 0), (4, 0), (2, 0), (6, 0), (1, 0)], 5, 1e9) == [[0, 2], [3, 4], [5]]
    assert compact.plan_parts([(1, 600), (1, 600), (1, 10)], 100, 1000) == [[0, 1], [2]]


def test_parts_are_sized_kept_when_unchanged_and_rewritten_when_torn(tmp_path):
    run = _run(tmp_path, part_rows=5, row_group_rows=2)
    jobs = _jobs(tmp_path, [3, 0, 4, 2, 6])
    r = compact.write_table(run, "rejects", jobs)
    parts = sorted((run.dir / "rejects").glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"] and r["rows"] == 15
    ids = [x for p in parts for x in store.read(p).column("id").to_pylist()]
    assert ids == [f"{k}-{i}" for k, n in enumerate([3, 0, 4, 2, 6]) for i in range(n)]  # shard order, nothing lost
    assert store.read(parts[0]).num_rows == 7 and pq.ParquetFile(parts[0]).num_row_groups == 2  # row groups of >= 2 rows
    mtimes = [p.stat().st_mtime_ns for p in parts]
    assert compact.write_table(run, "rejects", jobs)["rewritten"] == 0
    assert [p.stat().st_mtime_ns for p in parts] == mtimes
    parts[1].write_bytes(parts[1].read_bytes()[:100])  # torn by a crash
    assert compact.write_table(run, "rejects", jobs)["rewritten"] == 1
    assert store.read(parts[1]).num_rows == 8 and parts[0].stat().st_mtime_ns == mtimes[0]
    assert list(parts[1].parent.glob("part-00001.parquet.corrupt-*"))
    more = jobs + _jobs(tmp_path / "more", [0, 0, 0, 0, 0, 2])[5:]  # a new shard (incremental run)
    more[-1].k = 5
    r = compact.write_table(run, "rejects", more)
    assert r["rewritten"] == 1 and r["parts"] == 3 and parts[0].stat().st_mtime_ns == mtimes[0]
