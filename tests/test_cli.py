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
    assert r.returncode == 0 and any(line.startswith("en ") for line in r.stdout.splitlines())
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


# ---- user errors: one line (+ hint), exit status 2, no traceback (issue 21) ---------------------------------
def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          env=env_for_subprocess(), stdin=subprocess.DEVNULL, timeout=300)


def _assert_user_error(r, needle):
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("speechinstruct: ")]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), lines
    assert len(lines) == 1 or lines[1].startswith("hint: "), lines
    assert needle in lines[0], (needle, lines)


@pytest.fixture(scope="module")
def own(tmp_path_factory, corpus):
    d = tmp_path_factory.mktemp("own")
    good = {"path": str(corpus / "audio" / "s0.wav")}
    (d / "bad_line.jsonl").write_text(json.dumps(good) + "\n" + '{"path": "x.wav", oops}\n')
    (d / "not_object.jsonl").write_text(json.dumps(good) + "\n" + '["x.wav"]\n')
    (d / "good.jsonl").write_text(json.dumps(good) + "\n")
    (d / "other.jsonl").write_text(json.dumps({"path": str(corpus / "audio" / "s1.mp3")}) + "\n")
    (d / "typo.yaml").write_text("language: en\nname: mine\nllm:\n  max_token: 80\n")
    (d / "wrong_type.yaml").write_text("language: en\nname: mine\nshard_size: many\n")
    (d / "not_yaml.yaml").write_text("language: en\nname: [mine\n")
    return d


@pytest.mark.parametrize("args,needle", [
    (["dataset", "--lang", "en", "--input", "{d}/bad_line.jsonl"], "bad_line.jsonl:2: not valid JSON"),
    (["dataset", "--lang", "en", "--input", "{d}/not_object.jsonl"], "not_object.jsonl:2: expected a JSON object"),
    (["dataset", "--lang", "en", "--input", "{d}/nowhere"], "does not exist"),
    (["dataset", "--lang", "en", "--input", "{d}/good.jsonl", "--text-input", "{d}/nowhere.jsonl"], "text instruction corpus"),
    (["dataset", "--lang", "xx"], "unknown language profile 'xx'"),
    (["dataset", "--profile", "{d}/typo.yaml"], "unknown profile key 'llm.max_token'"),
    (["dataset", "--profile", "{d}/wrong_type.yaml"], "shard_size"),
    (["dataset", "--profile", "{d}/not_yaml.yaml"], "not valid YAML"),
    (["dataset", "--profile", "{d}/missing.yaml"], "does not exist"),
    (["plan", "--lang", "en", "--input", "{d}/bad_line.jsonl"], "bad_line.jsonl:2"),
    (["tts", "--lang", "en", "--text-input", "{d}/nowhere.jsonl"], "does not exist"),
])
def test_user_errors_are_one_line_exit_2(own, args, needle):
    r = _cli(*[a.format(d=own) for a in args])
    _assert_user_error(r, needle)
    if "typo.yaml" in " ".join(args):
        assert "did you mean 'llm.max_tokens'" in r.stderr


def test_output_folder_holding_another_run_is_a_user_error(own, tmp_path):
    from pipeline.run.plan import Run

    Run(load_profile("en", input=str(own / "other.jsonl"), **{"tts.input": None}), tmp_path)  # plans only
    r = _cli("dataset", "--lang", "en", "--input", str(own / "good.jsonl"), "--output-dir", str(tmp_path), "--no-prefect")
    _assert_user_error(r, "holds a run")
    assert "--overwrite" in r.stderr


def test_debug_shows_the_traceback(own):
    r = _cli("dataset", "--lang", "en", "--input", str(own / "bad_line.jsonl"), "--debug")
    assert r.returncode not in (0, 2) and "Traceback" in r.stderr and "bad_line.jsonl:2" in r.stderr


def test_profile_new_then_plan_with_it(own, tmp_path):
    r = _cli("profile", "new", "mine", "--from", "en", "--input", str(own / "good.jsonl"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "mine.yaml").read_text()
    assert text.startswith("# mine: your own speechinstruct profile") and "--profile mine.yaml" in text
    assert "# production:" in text  # the source profile's comments travel
    assert "samples/en" not in text  # nothing of the sample corpus
    _assert_user_error(_cli("profile", "new", "mine", "--from", "en", cwd=tmp_path), "already exists")
    r = _cli("plan", "--profile", "mine.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["audio"]["files"] == 1 and plan["texts"] == 0 and plan["text_input"] is None
    assert plan["output"] == str(tmp_path / "data" / "en")  # relative paths: next to the profile file
    assert plan["models"]["asr"][0]["backend"] == "asr:faster-whisper"
