"""Scale-out: the dataset flow on a local multi-process Dask cluster gives the same rows as a
single-worker run, with no duplicates and no shard written twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

import pyarrow.parquet as pq

from pipeline.cli import run_direct

from tests.conftest import ROOT, env_for_subprocess


def _rows(out, table):
    files = sorted((out / table).glob("part-*.parquet"))
    return sorted((r["id"], r.get("response") or r.get("asr_text") or r.get("reason")) for r in pq.ParquetDataset(files).read(
        columns=[c for c in ("id", "response", "asr_text", "reason") if c in pq.read_schema(files[0]).names]).to_pylist())


def test_dask_cluster_equals_single_worker(corpus, tmp_path, test_profile):
    manifest = tmp_path / "m.jsonl"
    names = ["s0.wav", "s1.mp3", "s3.ogg", "empty.wav"]
    manifest.write_text("\n".join(json.dumps({"path": str(corpus / "audio" / n)}) for n in names) + "\n")
    # the in-process engine: the same request gives the same text. llama-server (llm.backend llama-cpp) decodes the
    # requests in flight together, and which requests share a batch depends on timing, so its sampled text can
    # differ between runs in the last digits of the logits; this test is about the orchestration, not the engine
    overrides = {"input": str(manifest), "shard_size": 1, "tts.input": None, "llm.max_tokens": 60, "llm.retries": 0,
                 "llm.backend": "llama-cpp-inprocess"}
    from pipeline.core.config import load_profile

    single = run_direct(load_profile("en", **overrides), str(tmp_path / "single"), report=False)

    code = textwrap.dedent(f"""
        import json
        from flows.dataset import dataset
        rows = dataset(lang="en", output_dir={str(tmp_path / 'dask')!r}, report=False,
                       overrides={{**{overrides!r}, "orchestration.task_runner": "dask", "orchestration.workers": 2}})
        print(json.dumps(rows))
    """)
    env = {**env_for_subprocess(), "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", "PREFECT_LOGGING_LEVEL": "WARNING"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == single
    a, b = tmp_path / "single" / "en", tmp_path / "dask" / "en"
    for table in ("utterances", "instructions", "rejects"):
        got = _rows(b, table)
        assert len({i for i, _ in got}) == len(got), f"duplicate ids in {table}"
        assert got == _rows(a, table), table
    pids = set()
    for stage in ("ingest", "metadata", "asr", "llm"):
        lines = [l.split("\t") for l in (b / "_work" / stage / "writes.log").read_text().splitlines()]
        assert Counter(l[0] for l in lines) == Counter(str(k) for k in range(4)), f"{stage}: a shard written twice or missing"
        pids |= {l[1] for l in lines}
    assert len(pids) >= 2, "all shards ran in one process: the cluster did not spread the work"
