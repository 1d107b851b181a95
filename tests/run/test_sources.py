"""The plan's source table (pipeline/run/sources.py): per-shard reads, streaming discovery equal to
recipes.audio.discover, incremental runs (new files -> new shards, only those processed; changed and removed
files reported), and the Prefect task grouping."""
from __future__ import annotations

import json
import os
import shutil
import time
import warnings

import pytest

from pipeline.core.config import load_profile
from pipeline.recipes.audio import Source, discover
from pipeline.run import sources as st
from pipeline.run.plan import Run, build_plan
from pipeline.run.runner import run_stage


def _profile(inp, **kw):
    return load_profile("en", input=str(inp), **{"shard_size": 2, "tts.input": None, **kw})


@pytest.fixture
def folder(corpus, tmp_path):
    d = tmp_path / "in"
    shutil.copytree(corpus / "audio", d / "a")
    (d / "b" / "c").mkdir(parents=True)
    shutil.copy(corpus / "audio" / "s1.mp3", d / "b" / "c" / "x.mp3")
    shutil.copy(corpus / "audio" / "s0.wav", d / "a.wav")  # sorts between a/ and b/ by path parts
    (d / ".hidden").mkdir()
    (d / ".hidden" / "h.wav").write_bytes(b"x")
    (d / "b" / ".dot.wav").write_bytes(b"x")
    return d


def test_streaming_discovery_equals_discover(folder, corpus):
    assert [s.rel for s in st.iter_discover(folder)] == [s.rel for s in discover(folder)]
    m = corpus / "manifest.jsonl"
    assert [s.model_dump() for s in st.iter_discover(m)] == [s.model_dump() for s in discover(m)]


def test_plan_is_a_small_header_and_chunks_read_per_shard(folder, tmp_path):
    p = _profile(folder)
    run = Run(p, tmp_path / "out")
    ref = build_plan(p)  # the in-memory plan (preview): same sources, same shards
    header = json.loads((run.work / "plan.json").read_text())
    assert header["format"] == st.FORMAT and "sources" not in header and header["n_shards"] == ref.n_shards
    attached = Run(p, tmp_path / "out", attach=True)
    got = [[s.model_dump() for s in attached.sources(k)] for k in range(ref.n_shards)]
    assert got == [[Source(**d).model_dump() for d in ref.sources[ref.shard_slice(k)]] for k in range(ref.n_shards)]
    assert attached.plan.files == ref.files and attached.plan.sources == ref.sources


def test_added_files_become_new_shards_and_only_they_are_processed(corpus, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for n in ("s0.wav", "s1.mp3", "empty.wav"):
        shutil.copy(corpus / "audio" / n, folder / n)
    p = _profile(folder)
    out = tmp_path / "out"
    run = Run(p, out)
    n0 = run.plan.n_shards
    run_stage(run, "ingest", progress=False)
    before = {k: run.part("ingest", k).stat().st_mtime_ns for k in range(n0)}
    log0 = (run.work / "ingest" / "writes.log").read_text().splitlines()

    shutil.copy(corpus / "audio" / "s2.m4a", folder / "0_first.m4a")  # sorts first: still a new shard at the end
    (folder / "z").mkdir()
    shutil.copy(corpus / "audio" / "s3.ogg", folder / "z" / "new.ogg")
    plan_json = (run.work / "plan.json").read_bytes()
    pending = Run(p, out, attach=True)._plan().pending  # the preview's compare: writes nothing
    assert (pending["new"], pending["changed"], pending["removed"]) == (2, 0, 0)
    assert (run.work / "plan.json").read_bytes() == plan_json

    run2 = Run(p, out)
    assert run2.plan.n_shards == n0 + 1
    assert sorted(s.rel for s in run2.sources(n0)) == ["0_first.m4a", "z/new.ogg"]
    totals = run_stage(run2, "ingest", progress=False)
    assert totals["done_before"] == n0 and totals["shards"] == n0 + 1
    log = (run.work / "ingest" / "writes.log").read_text().splitlines()
    assert len(log) == len(log0) + 1 and log[-1].split("\t")[0] == str(n0)  # one new shard written, nothing redone
    assert {k: run.part("ingest", k).stat().st_mtime_ns for k in range(n0)} == before
    assert len(run2.plan.header["generations"]) == 2


def test_changed_and_removed_files_are_reported(folder, tmp_path):
    p = _profile(folder)
    out = tmp_path / "out"
    n0 = Run(p, out).plan.n_shards
    (folder / "a" / "s1.mp3").unlink()
    time.sleep(0.01)
    f = folder / "a.wav"
    f.write_bytes(f.read_bytes() + b"\0\0")  # changed: another size
    os.utime(f, ns=(time.time_ns(), time.time_ns()))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        run = Run(p, out)
    c = run.plan.changes
    assert (c["changed"], c["removed"]) == (1, 1) and c["changed_files"] == ["a.wav"] and c["removed_files"] == ["a/s1.mp3"]
    assert any("changed since they were planned" in str(x.message) and "gone from the input" in str(x.message) for x in w)
    assert run.plan.n_shards == n0 and "a/s1.mp3" in run.plan.files  # nothing new; the removed file stays planned


def test_a_format_1_plan_is_converted_with_its_shards(folder, tmp_path):
    p = _profile(folder)
    ref = build_plan(p)
    work = tmp_path / "out" / "en" / "_work"
    work.mkdir(parents=True)
    (work / "plan.json").write_text(json.dumps(ref.__dict__))  # the plan.json of an earlier version
    run = Run(p, tmp_path / "out")
    assert json.loads((work / "plan.json").read_text())["format"] == st.FORMAT
    assert run.plan.n_shards == ref.n_shards and run.plan.sources == ref.sources


def test_task_groups_keep_a_stage_at_max_tasks():
    from flows.dataset import task_groups

    p = load_profile("en", **{"orchestration.max_tasks": 1000})
    ids = list(range(100_000))
    groups = task_groups(ids, p)
    assert len(groups) == 1000 and sum(groups, []) == ids
    assert task_groups(list(range(7)), p) == [[k] for k in range(7)]  # small runs: one shard per task
    assert [len(g) for g in task_groups(list(range(10)), load_profile("en", **{"orchestration.shards_per_task": 4}))] == [4, 4, 2]
