"""CLI / make entry points and the Prefect flow wiring (run through a real ephemeral Prefect server)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from pipeline.core.config import UnknownLanguage, known_languages, load_profile

from .conftest import ROOT, env_for_subprocess


def test_unknown_language_lists_profiles():
    assert "en" in known_languages()
    for bad in ("C.UTF-8", "xx", "", None):
        with pytest.raises(UnknownLanguage) as e:
            load_profile(bad)
        assert "en" in str(e.value)


@pytest.mark.parametrize("args,needle", [([], "the locale"), (["LANG=C.UTF-8"], "unknown language profile"), (["LANG=zz"], "known profiles: ")])
def test_make_dataset_refuses_locale_or_unknown_lang(args, needle):
    env = {**os.environ, "LANG": "C.UTF-8"}
    r = subprocess.run(["make", "-s", "dataset", *args], cwd=ROOT, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert needle in r.stderr and "en" in r.stderr


def test_cli_help_and_profiles():
    r = subprocess.run([sys.executable, "-m", "pipeline", "--help"], cwd=ROOT, capture_output=True, text=True, env=env_for_subprocess())
    assert r.returncode == 0 and "dataset" in r.stdout and "models" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pipeline", "profiles"], cwd=ROOT, capture_output=True, text=True, env=env_for_subprocess())
    assert r.returncode == 0 and r.stdout.startswith("en")
    r = subprocess.run([sys.executable, "-m", "pipeline", "dataset", "--lang", "C.UTF-8"], cwd=ROOT, capture_output=True, text=True, env=env_for_subprocess())
    assert r.returncode == 2 and "unknown language profile" in r.stderr


def test_prefect_dataset_flow_runs_every_stage_subflow(corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps({"path": str(corpus / "audio" / f)}) for f in ["s2.m4a", "empty.wav"]) + "\n")
    texts = tmp_path / "t.jsonl"
    texts.write_text(json.dumps({"instruction": "Name a fruit that is yellow.", "input": "", "output": "A banana."}) + "\n")
    code = textwrap.dedent(f"""
        import asyncio, json
        from flows.dataset import dataset
        state = dataset(lang="en", input={str(manifest)!r}, output_dir={str(tmp_path / 'out')!r}, report=True,
                        overrides={{"tts.input": {str(texts)!r}, "llm.max_tokens": 80}}, return_state=True)
        from prefect.client.orchestration import get_client
        async def runs():
            async with get_client() as c:
                flows = {{f.id: f.name for f in await c.read_flows()}}
                return [(flows[r.flow_id], r.state_type.value) for r in await c.read_flow_runs()]
        print(json.dumps({{"completed": state.is_completed(), "rows": state.result(), "runs": asyncio.run(runs())}}))
    """)
    env = {**env_for_subprocess(), "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180", "PREFECT_LOGGING_LEVEL": "WARNING"}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["completed"]
    names = {n for n, _ in out["runs"]}
    assert {"dataset", "ingest", "metadata", "asr", "llm", "tts", "shards"} <= names
    assert all(s == "COMPLETED" for _, s in out["runs"])
    assert out["rows"]["utterances"] == 1 and out["rows"]["rejects"] >= 1
    assert (tmp_path / "out" / "en" / "report.html").stat().st_size > 10_000
    for stage in ("ingest", "metadata", "asr", "llm", "tts"):  # one progress bar per stage subflow, with rows/s
        assert re.search(rf"{stage}: 100%.*1/1 .*rows=\d+.*rows_per_s=", r.stderr), (stage, r.stderr[-3000:])


def test_cli_train_mirrors_pipeline_train():
    """`python -m pipeline train` (what `make train` runs) takes every option of the train flow."""
    run = lambda *a: subprocess.run([sys.executable, "-m", "pipeline", "train", *a], cwd=ROOT, capture_output=True,
                                    text=True, env=env_for_subprocess())
    h = run("--help")
    assert h.returncode == 0 and all(o in h.stdout for o in ("--variant", "--whisper", "--overwrite", "--no-prefect", "--set"))
    r = run("--lang", "zz", "--no-prefect")
    assert r.returncode == 2 and "zz" in r.stderr and "en" in r.stderr
