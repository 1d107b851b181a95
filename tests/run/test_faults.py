"""Faults: a worker SIGKILLed mid-stage, a full disk during a write, torn or damaged part files, and two
processes on one output folder. The next run redoes what is affected, never exports a damaged table and
loses no input from the accounting."""
from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.core import store
from pipeline.run.runner import Run, RunBusy, exclusive, run_stage
from tests.conftest import ROOT, env_for_subprocess
from tests.run.child import profile

FILES = ["s0.wav", "s1.mp3", "s2.m4a", "s3.ogg", "empty.wav", "long.flac"]


@pytest.fixture(scope="module")
def manifest(corpus, tmp_path_factory):
    m = tmp_path_factory.mktemp("faults") / "m.jsonl"
    m.write_text("".join(json.dumps({"path": str(corpus / "audio" / n)}) + "\n" for n in FILES))
    return m


def _log(out: Path, stage: str) -> list[list[str]]:
    p = out / "en" / "_work" / stage / "writes.log"
    return [line.split("\t") for line in p.read_text().splitlines()] if p.exists() else []


def _child(out, manifest, mode, go=None):
    return subprocess.Popen([sys.executable, "-m", "tests.run.child", str(out), str(manifest), mode, *([str(go)] if go else [])],
                            cwd=ROOT, env=env_for_subprocess(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ids(run: Run, stage: str) -> list[str]:
    return sorted(i for k in run.shard_ids(stage) for i in store.read(run.part(stage, k), columns=["id"]).column("id").to_pylist())


def _accounted(run: Run, stage: str) -> set[str]:
    seen = set()
    for k in run.shard_ids(stage):
        for p in (run.part(stage, k), run.rejects_part(stage, k)):
            seen |= set(store.read(p, columns=["source_path"]).column("source_path").to_pylist())
    return seen


@pytest.fixture(scope="module")
def reference(manifest, tmp_path_factory):
    """An uninterrupted run of ingest + metadata (the result every faulty run must end with)."""
    out = tmp_path_factory.mktemp("ref")
    run = Run(profile(str(manifest)), out)
    for s in ("ingest", "metadata"):
        run_stage(run, s, progress=False)
    return run


@pytest.mark.parametrize("mode", ["kill-in-write", "kill-in-process"])
def test_sigkilled_worker_is_resumed_without_loss_or_duplicates(manifest, reference, tmp_path, mode):
    out = tmp_path / "out"
    p = _child(out, manifest, mode)
    _, err = p.communicate(timeout=600)
    assert p.returncode == -9, err[-2000:]
    run = Run(profile(str(manifest)), out)  # the next run: cleans the dead writer's temps
    assert not list(out.rglob(".*.tmp-*"))
    stage = "ingest" if mode == "kill-in-write" else "metadata"
    assert (1 if mode == "kill-in-write" else 0) in run.pending(stage)
    dead = [c for c in (run.work / "claims").glob("*.claim")]
    assert dead and all(run.holder(c.stem.rsplit("-", 1)[0], int(c.stem.rsplit("-", 1)[1])) is None for c in dead)
    for s in ("ingest", "metadata"):
        run_stage(run, s, progress=False)
    assert not list((run.work / "claims").glob("*.claim"))  # taken over, then released
    for s in ("ingest", "metadata"):
        assert Counter(line[0] for line in _log(out, s)) == Counter(str(k) for k in run.shard_ids(s)), s
        assert _ids(run, s) == _ids(reference, s)
    assert _accounted(run, "ingest") == _accounted(reference, "ingest") == {s["rel"] for s in run.plan.sources}


def _fail_writes(monkeypatch, match: str, err: int = errno.ENOSPC):
    real = store.pq.write_table

    def full(table, where, **kw):
        if match in str(where):
            with open(where, "wb") as f:  # a few bytes made it to disk, then the disk was full
                f.write(b"PAR1" + b"\0" * 100)
            raise OSError(err, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(store.pq, "write_table", full)


def test_full_disk_during_a_write_fails_clearly_then_resumes(manifest, reference, tmp_path, monkeypatch):
    run = Run(profile(str(manifest)), tmp_path)
    run_stage(run, "ingest", progress=False)
    _fail_writes(monkeypatch, ".part-00002.parquet")
    with pytest.raises(store.WriteFailed, match="disk is full") as e:
        run_stage(run, "metadata", progress=False)
    assert "metadata/part-00002.parquet" in str(e.value)
    assert not run.part("metadata", 2).exists() and not list(tmp_path.rglob(".*.tmp-*"))
    assert not list((run.work / "claims").glob("*.claim"))  # the failed shard's claim was released
    assert 2 in run.pending("metadata")
    monkeypatch.undo()  # space freed: the same command finishes the run
    run_stage(run, "metadata", progress=False)
    assert _ids(run, "metadata") == _ids(reference, "metadata")
    assert Counter(line[0] for line in _log(tmp_path, "metadata")) == Counter(str(k) for k in run.shard_ids("metadata"))


def test_full_disk_on_a_real_small_tmpfs(manifest, reference, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the failing-writer test covers this")
    try:
        run = Run(profile(str(manifest)), mnt)
        with pytest.raises(store.WriteFailed, match="disk is full"):
            run_stage(run, "ingest", progress=False)
        for k in run.shard_ids("ingest"):  # every part present is whole; nothing torn is left
            assert not run.part("ingest", k).exists() or store.check(run.part("ingest", k)) is None
        assert not list(mnt.rglob(".*.tmp-*"))
        done_before = set(run.shard_ids("ingest")) - set(run.pending("ingest"))
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        totals = run_stage(run, "ingest", progress=False)
        assert totals["done_before"] == len(done_before)
        assert _ids(run, "ingest") == _ids(reference, "ingest")
        assert _accounted(run, "ingest") == _accounted(reference, "ingest")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_truncated_part_is_detected_moved_aside_and_redone(manifest, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference.dir, out / "en")
    run = Run(profile(str(manifest)), out)
    part = run.part("ingest", 3)
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 3])  # what a crash of a non-atomic copy leaves
    with pytest.warns(UserWarning, match="not whole"):
        assert run.pending("ingest") == [3]
    assert list(part.parent.glob("part-00003.parquet.corrupt-*"))
    run_stage(run, "ingest", progress=False)
    assert _ids(run, "ingest") == _ids(reference, "ingest")
    assert pq.read_table(part).num_rows == pq.read_table(reference.part("ingest", 3)).num_rows


def test_damaged_input_part_is_redone_before_its_next_stage_reads_it(manifest, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference.dir, out / "en")
    run = Run(profile(str(manifest)), out)
    for k in (1, 5):
        run.part("metadata", k).unlink()
    part = run.part("ingest", 5)
    b = bytearray(part.read_bytes())
    b[len(b) // 3] ^= 0xFF  # a flipped byte inside a data page: the footer is fine, the checksum is not
    part.write_bytes(bytes(b))
    assert store.check(part) is None
    with pytest.raises(store.CorruptPart):
        store.read(part)
    run_stage(run, "metadata", progress=False)
    assert _ids(run, "metadata") == _ids(reference, "metadata")
    assert store.read(run.part("ingest", 5)).num_rows == store.read(reference.part("ingest", 5)).num_rows
    assert list(part.parent.glob("part-00005.parquet.corrupt-*"))


def test_overwrite_and_export_refuse_to_trample_a_live_process(manifest, tmp_path):
    run = Run(profile(str(manifest)), tmp_path)
    p = _child(tmp_path, manifest, "plain", tmp_path / "never")
    try:
        assert p.stdout.readline().strip() == "ready"  # plan made, models loaded: holds no claim, waits for its go file
        c = run.claim("metadata", 0)
        with exclusive(run, "export"):
            with pytest.raises(RunBusy, match="export is being done by pid"):
                with exclusive(Run(profile(str(manifest)), tmp_path, attach=True), "export", wait=False):
                    pass
        c.release()
        hold = subprocess.Popen([sys.executable, "-c", (
            "import sys,time; from pipeline.run.runner import Run; from tests.run.child import profile;"
            "r=Run(profile(sys.argv[1]), sys.argv[2], attach=True); c=r.claim('ingest', 0); print('held', flush=True); time.sleep(600)"),
            str(manifest), str(tmp_path)], cwd=ROOT, env=env_for_subprocess(), stdout=subprocess.PIPE, text=True)
        assert hold.stdout.readline().strip() == "held"
        with pytest.raises(RunBusy, match=f"pid {hold.pid} on host"):
            Run(profile(str(manifest)), tmp_path, overwrite=True)
        assert (run.work / "plan.json").exists()  # nothing was deleted
        hold.kill()
        hold.wait()
        Run(profile(str(manifest)), tmp_path, overwrite=True)  # the holder is dead: overwrite is allowed
    finally:
        p.kill()
        p.wait()


def test_two_processes_share_one_run_and_write_every_shard_once(manifest, reference, tmp_path):
    go = tmp_path / "go"
    ps = [_child(tmp_path, manifest, "plain", go) for _ in range(2)]
    time.sleep(0.5)
    deadline = time.time() + 600
    while not all((tmp_path / "en" / "_work" / "plan.json").exists() for _ in ps) and time.time() < deadline:
        time.sleep(0.2)
    go.touch()
    results = []
    for p in ps:
        o, e = p.communicate(timeout=900)
        assert p.returncode == 0, e[-3000:]
        results.append(json.loads(o.strip().splitlines()[-1]))
    run = Run(profile(str(manifest)), tmp_path, attach=True)
    pids = set()
    for s in ("ingest", "metadata"):
        lines = _log(tmp_path, s)
        assert Counter(line[0] for line in lines) == Counter(str(k) for k in run.shard_ids(s)), f"{s}: a shard written twice or missing"
        pids |= {line[1] for line in lines}
        assert _ids(run, s) == _ids(reference, s)
    assert pids == {str(r["pid"]) for r in results}, "both processes did part of the work"
    assert not list((run.work / "claims").glob("*.claim"))


def test_export_never_writes_a_torn_or_damaged_table(manifest, reference, tmp_path):
    import hashlib
    import inspect

    from pipeline.dataset import export as ex

    if "stages" not in inspect.signature(ex.finish).parameters:
        pytest.skip("export of a stage prefix (--until) is not available")
    out = tmp_path / "out"
    shutil.copytree(reference.dir, out / "en")
    run = Run(profile(str(manifest)), out)
    stages = ("ingest", "metadata")
    first = ex.finish(run, report=False, stages=stages)
    ids = sorted(r["id"] for f in sorted((run.dir / "utterances").glob("part-*.parquet")) for r in store.read(f, columns=["id"]).to_pylist())
    torn = run.dir / "utterances" / "part-00001.parquet"
    torn.write_bytes(torn.read_bytes()[:200])  # a final table part torn by a crash
    (run.dir / "utterances" / "part-00003.parquet").unlink()
    work = run.part("metadata", 3)  # ... and the work part it is rebuilt from is damaged inside
    b = bytearray(work.read_bytes())
    b[len(b) // 3] ^= 0xFF
    work.write_bytes(bytes(b))
    m = ex.finish(run, report=False, stages=stages)
    assert list(torn.parent.glob("part-00001.parquet.corrupt-*")) and list(work.parent.glob("part-00003.parquet.corrupt-*"))
    for name, info in m["tables"].items():
        for f in info["files"]:
            p = run.dir / f["path"]
            assert store.check(p) is None and store.read(p).num_rows == f["rows"]
            assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"]
    got = sorted(r["id"] for f in sorted((run.dir / "utterances").glob("part-*.parquet")) for r in store.read(f, columns=["id"]).to_pylist())
    assert got == ids and m["tables"]["utterances"]["rows"] == first["tables"]["utterances"]["rows"]
    assert ex.check_accounting(run)["accounted"] == len(run.plan.files)
