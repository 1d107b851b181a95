"""`dataset` parent flow with one subflow per stage; each shard of a stage is one task.

Flows only wire stages: every function here calls pipeline.runner / pipeline.export.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from pipeline.config import Profile, load_profile
from pipeline.export import export
from pipeline.runner import Run, process_shard


@task(name="shard", retries=1, retry_delay_seconds=2, task_run_name="{stage}-{k:05d}")
def shard_task(profile: Profile, output_dir: str | None, stage: str, k: int) -> dict:
    return process_shard(Run(profile, output_dir), stage, k)


def _stage_flow(stage: str):
    @flow(name=stage, log_prints=True)
    def stage_flow(profile: Profile, output_dir: str | None = None) -> dict:
        run = Run(profile, output_dir)
        t0 = time.time()
        todo = run.pending(stage)
        counts = [shard_task(profile, output_dir, stage, k) for k in todo]
        if todo:
            run.add_timing(stage, time.time() - t0)
        summary = {"stage": stage, "shards": len(run.shard_ids(stage)), "ran": len(todo),
                   "rows": sum(c.get("rows", 0) for c in counts), "rejects": sum(c.get("rejects", 0) for c in counts)}
        get_run_logger().info("%s", summary)
        return summary

    return stage_flow


ingest_flow = _stage_flow("ingest")
metadata_flow = _stage_flow("metadata")
asr_flow = _stage_flow("asr")
llm_flow = _stage_flow("llm")
tts_flow = _stage_flow("tts")


@flow(name="shards", log_prints=True)
def shards_flow(profile: Profile, output_dir: str | None = None, report: bool = True) -> dict:
    run = Run(profile, output_dir)
    manifest = export(run)
    if report:
        from pipeline.report import write_report

        write_report(run.dir)
    return {t: v["rows"] for t, v in manifest["tables"].items()}


@flow(name="dataset", log_prints=True)
def dataset(lang: str, input: str | None = None, output_dir: str | None = None, overwrite: bool = False,
            report: bool = True, overrides: dict[str, Any] | None = None) -> dict:
    """Build the speech-instruction dataset for one language profile.

    ``overrides`` are dotted profile keys, e.g. ``{"shard_size": 4, "llm.max_tokens": 120}``."""
    profile = load_profile(lang, input=input, **(overrides or {}))
    Run(profile, output_dir, overwrite=overwrite)  # plan once (and wipe on overwrite) before the stages
    for stage_flow in (ingest_flow, metadata_flow, asr_flow, llm_flow, tts_flow):
        stage_flow(profile, output_dir)
    rows = shards_flow(profile, output_dir, report)
    get_run_logger().info("rows per table: %s -> %s", rows, Path(output_dir or profile.path(profile.output_dir)) / lang)
    return rows
