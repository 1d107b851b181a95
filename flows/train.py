"""`train` flow: speech LM on the produced shards (prepare -> features -> fit -> evaluate -> report).

Flows only wire: every task calls a pipeline.train function (pipeline.train.grass for ``variant="grass"``).
Tasks hand each other nothing but small summaries; the state (split, feature cache, checkpoints, metrics) lives in
<output_dir>/<lang>/train/, so a rerun resumes from the last checkpoint.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

from pipeline.core.config import load_profile
from pipeline.train.evaluate import evaluate
from pipeline.train.loop import fit
from pipeline.train.report import write_report
from pipeline.train.run import TrainRun, compute_features, prepare


def _run(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None, overwrite: bool = False) -> TrainRun:
    return TrainRun(load_profile(lang, **(overrides or {})), output_dir, data_dir, overwrite)


@task(name="train-prepare")
def prepare_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None, overwrite: bool) -> dict:
    return prepare(_run(lang, output_dir, data_dir, overrides, overwrite))


@task(name="train-features", retries=1, retry_delay_seconds=2)
def features_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None) -> dict:
    return compute_features(_run(lang, output_dir, data_dir, overrides))


@task(name="train-fit", retries=1, retry_delay_seconds=2)  # a retry resumes from the last checkpoint
def fit_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None) -> dict:
    return fit(_run(lang, output_dir, data_dir, overrides))


@task(name="train-evaluate")
def evaluate_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None) -> dict:
    m = evaluate(_run(lang, output_dir, data_dir, overrides))
    return {"tasks": {k: v["scores"] for k, v in m["tasks"].items()}, "label_tasks_beat_no_audio": m["label_tasks_beat_no_audio"]}


@task(name="train-report")
def report_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None) -> str:
    return str(write_report(_run(lang, output_dir, data_dir, overrides)))


@task(name="train-grass-prepare")
def grass_prepare_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None, overwrite: bool,
                       whisper: str | None, grass: dict | None) -> dict:
    from pipeline.train.grass.run import GrassRun
    from pipeline.train.grass.run import prepare as grass_prepare

    return grass_prepare(GrassRun(load_profile(lang, **(overrides or {})), output_dir, data_dir, overwrite, grass, whisper=whisper))


@task(name="train-grass", retries=1, retry_delay_seconds=2)  # a retry resumes from the last checkpoint
def grass_task(lang: str, output_dir: str | None, data_dir: str | None, overrides: dict | None, whisper: str | None,
               grass: dict | None) -> dict:
    from pipeline.train.grass.entry import run_grass

    return run_grass(load_profile(lang, **(overrides or {})), output_dir, data_dir, whisper=whisper, grass=grass)


@flow(name="train", log_prints=True)
def train(lang: str, output_dir: str | None = None, data_dir: str | None = None, overwrite: bool = False,
          overrides: dict[str, Any] | None = None, variant: str = "desta", whisper: str | None = None,
          grass: dict[str, Any] | None = None) -> dict:
    """Train the adapter on <output_dir>/<lang>/ shards and score it; ``overrides`` are dotted profile
    keys, e.g. ``{"train.max_steps": 50}``. ``variant="grass"``: fine-tune the decoder of the Whisper model
    ``whisper`` instead (pipeline/train/grass/; ``grass``: GrassConfig fields, e.g. ``{"lr": 1e-5}``)."""
    log = get_run_logger()
    args = (lang, output_dir, data_dir, overrides)
    if variant == "grass":
        out = {"prepare": grass_prepare_task(*args, overwrite, whisper, grass)}
        log.info("split: %s", out["prepare"])
        out.update(grass_task(*args, whisper, grass))
        return out
    if variant != "desta":
        raise ValueError(f"unknown variant {variant!r} (desta | grass)")
    out = {"prepare": prepare_task(*args, overwrite)}
    log.info("split: %s", out["prepare"])
    out["features"] = features_task(*args)
    out["fit"] = fit_task(*args)
    log.info("fit: %s", out["fit"])
    scores = evaluate_task(*args)
    out["tasks"] = scores["tasks"]
    out["report"] = report_task(*args)
    if scores["label_tasks_beat_no_audio"] is False:
        log.warning("the trained model does not beat the no-audio baseline on every label task (see %s)", out["report"])
    return out
