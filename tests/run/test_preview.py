"""`python -m pipeline plan`: the plan of a run before it runs, checked against what the run then does."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.core.audio import load
from pipeline.core.config import load_profile
from pipeline.recipes.audio import Source
from pipeline.run.preview import Eta, _hms, format_plan, make_plan, measure, probe, probe_sources
from pipeline.run.runner import Run, run_stage

HEADER_REASONS = {"empty": "empty", "not_audio": "not_audio", "zero_length": "zero_length", "corrupt": "corrupt",
                  "missing": "missing"}


def test_probe_reads_headers_of_every_format(corpus):
    for name in ["s0.wav", "s1.mp3", "s2.m4a", "s3.ogg", "long.flac"]:
        info = probe(corpus / "audio" / name)
        decoded = load(corpus / "audio" / name).size / 16000
        assert info["problem"] is None and info["seconds"] == pytest.approx(decoded, abs=0.1), (name, info, decoded)
    assert probe(corpus / "audio" / "empty.wav")["problem"] == "empty"
    assert probe(corpus / "audio" / "notes.txt")["problem"] == "not_audio"
    assert probe(corpus / "audio" / "header_only.wav")["problem"] == "zero_length"
    assert probe(corpus / "audio" / "corrupt.mp3")["problem"] == "corrupt"
    assert probe(corpus / "audio" / "gone.wav")["problem"] == "missing"


def test_sampled_probe_extrapolates(corpus):
    src = [Source(path=str(corpus / "audio" / "s0.wav"), rel=f"s{i}.wav") for i in range(50)]
    full, part = probe_sources(src), probe_sources(src, max_probe=10)
    assert part["sampled"] and part["probed"] == 10 and part["files"] == 50
    assert part["audio_seconds"] == pytest.approx(full["audio_seconds"], rel=1e-6)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The sample corpus (samples/en): its plan, then a run of the ingest stage, then the plan again."""
    out = tmp_path_factory.mktemp("plan_out")
    profile = load_profile("en")
    before = make_plan(profile, out)
    run = Run(profile, out)
    run_stage(run, "ingest", progress=False)
    after = make_plan(profile, out)
    return profile, run, before, after


def test_plan_counts_match_the_run(sample_run):
    profile, run, before, _ = sample_run
    files = {s["rel"] for s in run.plan.sources}
    assert before["audio"]["files"] == len(files) == sum(e["files"] for e in before["audio"]["by_format"].values())
    assert before["texts"] == len(run.plan.texts) and before["text_rejects"] == len(run.plan.text_rejects)
    assert before["shards"]["ingest"] == run.plan.n_shards and before["shards"]["tts"] == run.plan.n_tts_shards
    assert before["existing_run"] is None
    # every file the headers call bad is rejected by ingest for that reason
    rejects = {}
    for f in sorted((run.work / "ingest").glob("rejects-*.parquet")):
        for r in pq.read_table(f).to_pylist():
            rejects.setdefault(r["source_path"], set()).add(r["reason"])
    flagged = {rel: why for why, p in before["audio"]["problems"].items() for rel in p["examples"]}
    assert flagged and sum(p["files"] for p in before["audio"]["problems"].values()) == len(flagged)
    for rel, why in flagged.items():
        assert HEADER_REASONS[why] in rejects.get(rel, set()), (rel, why, rejects.get(rel))
    # kept speech never exceeds the header hours of the files
    kept = sum(sum(pq.read_table(f, columns=["duration_s"]).column("duration_s").to_pylist())
               for f in (run.work / "ingest").glob("part-*.parquet"))
    assert 0 < kept <= before["audio"]["audio_seconds"] + 0.5
    assert before["models"]["asr"][0]["backend"] == f"asr:{profile.asr.backend}"
    assert before["models"]["tts"][0]["backend"] == f"tts:{profile.tts.backend}"
    text = format_plan(before)
    assert f"{len(files)} files" in text and "estimated total" in text


def test_plan_after_a_run_shows_finished_shards_and_measures_from_it(sample_run):
    profile, run, _, after = sample_run
    prev = after["existing_run"]
    assert prev["same"] and not prev["exported"]
    assert prev["stages"]["ingest"] == {"done": run.plan.n_shards, "shards": run.plan.n_shards}
    assert prev["stages"]["metadata"]["done"] == 0
    assert after["estimate"]["stages"]["ingest"]["seconds"] == 0  # nothing left to do
    assert after["estimate"]["sources"]["ingest"].startswith(f"measured: last run in {run.dir}")
    m = measure(run.dir)["stages"]["ingest"]
    utts = sum(pq.read_metadata(f).num_rows for f in (run.work / "ingest").glob("part-*.parquet"))
    assert m["rows_in"] == len(run.plan.sources) and m["rows_out"] == utts
    # measured on this very corpus, the predicted utterance count for the next stage is what ingest made
    assert after["estimate"]["stages"]["metadata"]["rows_in"] == pytest.approx(utts, abs=0.5)


def test_eta_counts_down_by_rows(sample_run):
    _, run, _, _ = sample_run
    todo = run.shard_ids("metadata")
    eta = Eta(run, "metadata", todo)
    assert eta.left == sum(pq.read_metadata(run.part("ingest", k)).num_rows for k in todo)
    first, total = eta.units[todo[0]], eta.left
    assert eta.update(todo[0], 10.0) == _hms((total - first) * 10.0 / first)  # seconds per row seen so far
    assert eta.left == total - first


def test_plan_cli_json_matches(sample_run, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT, env_for_subprocess

    _, run, before, _ = sample_run
    r = subprocess.run([sys.executable, "-m", "pipeline", "plan", "--lang", "en", "--output-dir", str(tmp_path), "--json"],
                       cwd=ROOT, capture_output=True, text=True, env=env_for_subprocess(), timeout=300)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["audio"] == before["audio"] and got["shards"] == before["shards"] and got["texts"] == before["texts"]
