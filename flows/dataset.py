"""`dataset` parent flow with one subflow per stage; each shard of a stage is one mapped task.

Flows only wire stages: the work is pipeline.run.runner.process_shard / pipeline.dataset.export.export.
Shard tasks run on the profile's task runner (thread pool by default, a local or remote Dask
cluster with ``orchestration.task_runner: dask``); a model is loaded once per worker process.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from tqdm.auto import tqdm

from pipeline.core.config import Profile
from pipeline.run.runner import STAGES as STAGE_ORDER
from pipeline.run.runner import Run, previous, process_shard, release_workers, stage_class
from pipeline.stages.base import in_flight
from pipeline.run.preview import Eta


def task_runner(profile: Profile, stage: str | None = None):
    """The stage flow's task runner: Dask worker processes, or a thread pool of orchestration.workers threads
    (at least as many as the stage keeps shards in work at once, e.g. llm.shards_in_flight)."""
    o = profile.orchestration
    if o.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                              cluster_kwargs={"n_workers": o.workers, "threads_per_worker": 1, "processes": True})
    return ThreadPoolTaskRunner(max_workers=max(o.workers, in_flight(stage_class(stage), profile) if stage else 1))


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def shard_cache_key(context, parameters) -> str | None:
    """Prefect cache key: profile digest + stage + shard + fingerprint of the shard's input and output.
    A shard whose output was deleted gets a new key, so the cache never hides missing files."""
    profile, stage = parameters["profile"], parameters["stage"]
    ks = parameters["ks"] if "ks" in parameters else [parameters["k"]]
    run = Run(profile, parameters["output_dir"], attach=True)  # the plan's header only (pipeline.run.sources)
    items = [profile.digest(), stage, str(run.dir)]
    for k in ks:  # a group of shards: every output must exist
        out = run.part(stage, k)
        if not out.exists():
            return None
        src = run.part(previous(stage), k) if previous(stage) else None
        items += [str(k), _fingerprint(out), _fingerprint(src) if src and src.exists() else "-"]
    return hashlib.sha256("|".join(items).encode()).hexdigest()


def task_groups(ids: list[int], profile: Profile) -> list[list[int]]:
    """Shards per Prefect task: ``orchestration.shards_per_task``, or (None) as many as keep the stage at
    ``orchestration.max_tasks`` tasks, so 10^5 small shards do not become 10^5 task runs for the server and
    the Dask scheduler to track. A task runs its shards one after another (each claimed, skipped when done)."""
    o = profile.orchestration
    per = o.shards_per_task or max(1, -(-len(ids) // o.max_tasks))
    return [ids[i:i + per] for i in range(0, len(ids), per)]


@task(name="shard", task_run_name="{stage}-{k:05d}", cache_key_fn=shard_cache_key, persist_result=True)
def shard_task(profile: Profile, output_dir: str | None, stage: str, k: int) -> dict:
    return process_shard(Run(profile, output_dir, attach=True), stage, k)


@task(name="shards", task_run_name="{stage}-{ks[0]:05d}", cache_key_fn=shard_cache_key, persist_result=True)
def shards_task(profile: Profile, output_dir: str | None, stage: str, ks: list[int]) -> list[dict]:
    run = Run(profile, output_dir, attach=True)
    return [process_shard(run, stage, k) for k in ks]


def _stage_flow(stage: str):
    @flow(name=stage, log_prints=True)
    def stage_flow(profile: Profile, output_dir: str | None = None) -> dict:
        run = Run(profile, output_dir, attach=True)
        ids = run.shard_ids(stage)
        todo = set(run.pending(stage))
        t0 = time.time()
        o = profile.orchestration
        task_ = shards_task.with_options(retries=o.retries, retry_delay_seconds=exponential_backoff(backoff_factor=o.retry_delay_s))
        futures = task_.map(unmapped(profile), unmapped(output_dir), unmapped(stage), task_groups(ids, profile))
        counts, done_rows, done_rejects = [], 0, 0
        # one bar per stage (stderr), advanced as shard tasks finish, in whatever order the runner ends them
        eta = Eta.start(run, stage, sorted(todo)) if todo else None  # remaining time by rows (preview.Eta)
        with tqdm(total=len(ids), desc=f"{stage:>8}", unit="shard", disable=not todo) as bar:
            if eta:
                bar.set_postfix(eta=eta.update(None, 0.0))
            for f in as_completed(list(futures)):
                got = f.result()
                counts += got
                bar.update(len(got))
                done_rows += sum(c.get("rows", 0) for c in got)  # running totals: O(1) per finished task
                done_rejects += sum(c.get("rejects", 0) for c in got)
                bar.set_postfix(rows=done_rows, rejects=done_rejects,
                                rows_per_s=f"{done_rows / max(time.time() - t0, 1e-6):.2f}",
                                **({"eta": eta.update(counts[-1].get("shard") if not counts[-1].get("skipped") else None,
                                                      time.time() - t0)} if eta else {}))
        seconds = time.time() - t0
        if todo:
            run.add_timing(stage, seconds)  # (the attached run: no discovery of the inputs again)
        rows = sum(c.get("rows", 0) for c in counts)
        summary = {"stage": stage, "shards": len(ids), "ran": len(todo), "rows": rows,
                   "rejects": sum(c.get("rejects", 0) for c in counts), "seconds": round(seconds, 1),
                   "rows_per_s": round(rows / seconds, 3) if todo and seconds else None}
        get_run_logger().info("%s", summary)
        return summary

    return stage_flow


STAGE_FLOWS = {s: _stage_flow(s) for s in STAGE_ORDER}


@flow(name="shards", log_prints=True)
def shards_flow(profile: Profile, output_dir: str | None = None, report: bool = True,
                stage_summaries: list[dict] | None = None, stages: list[str] | None = None) -> dict:
    from pipeline.dataset.export import finish

    run = Run(profile, output_dir)
    manifest = finish(run, report, tuple(stages) if stages is not None else None)
    rows = {t: v["rows"] for t, v in manifest["tables"].items()}
    create_table_artifact(key=f"stages-{profile.language}", table=stage_summaries or [], description="per-stage counts and throughput")
    reasons = "\n".join(f"| {k} | {v} |" for k, v in manifest["reject_reasons"].items()) or "| (none) | 0 |"
    create_markdown_artifact(key=f"dataset-{profile.language}", description="dataset summary", markdown=(
        f"# {profile.dataset} ({profile.language})\n\n" + "\n".join(f"- **{t}**: {n} rows" for t, n in rows.items())
        + f"\n- audio: {manifest['audio_hours'] * 60:.1f} min\n- output: `{run.dir}`\n\n| stage:reason | rows |\n|---|---|\n{reasons}\n"))
    return rows


def run_stages(profile: Profile, output_dir: str | None, report: bool, stages=STAGE_ORDER) -> dict:
    summaries = []
    for stage in stages:
        summaries.append(STAGE_FLOWS[stage].with_options(task_runner=task_runner(profile, stage))(profile, output_dir))
    return shards_flow(profile, output_dir, report, summaries, list(stages))


@flow(name="dataset", log_prints=True)
def dataset(lang: str, input: str | None = None, output_dir: str | None = None, overwrite: bool = False,
            report: bool = True, overrides: dict[str, Any] | None = None, text_input: str | None = None,
            until: str | None = None) -> dict:
    """Build the speech-instruction dataset for one language profile.

    ``input`` (audio folder or manifest) and ``text_input`` (text instruction corpus) replace the profile's
    inputs; naming either one replaces both, so ``input`` alone speaks no text corpus (pipeline.run.inputs).
    ``overrides`` are dotted profile keys, e.g. ``{"shard_size": 4, "orchestration.workers": 2}``.
    ``until``: run the stages up to and including this one and export what exists (a later run continues)."""
    from pipeline.run.inputs import load_user_profile, preflight

    profile, notes = load_user_profile(lang, None, input, text_input, overrides)
    notes += preflight(profile, output_dir, overwrite).notes
    for line in notes:
        get_run_logger().info("%s", line)
    Run(profile, output_dir, overwrite=overwrite)  # plan once (and wipe on overwrite) before the stages
    from pipeline.dataset.export import stages_until

    try:
        rows = run_stages(profile, output_dir, report, stages_until(until))
    finally:
        release_workers()  # models (and the llm stage's llama-server) of this process; Dask workers exit with the cluster
    get_run_logger().info("rows per table: %s -> %s", rows, Path(output_dir or profile.path(profile.output_dir)) / lang)
    return rows
