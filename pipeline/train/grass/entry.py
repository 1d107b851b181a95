"""run_grass: prepare -> features -> fit -> evaluate -> report of the GRASS variant, in-process (and the
DeSTA report next to it rewritten with the GRASS section when that run was scored)."""
from __future__ import annotations

from pathlib import Path

from pipeline.core.config import Profile, load_profile
from pipeline.train.grass.config import GrassConfig
from pipeline.train.grass.evaluate import evaluate
from pipeline.train.grass.loop import fit
from pipeline.train.grass.report import write_report
from pipeline.train.grass.run import GrassRun, compute_features, prepare
from pipeline.train.report import write_report as write_desta_report
from pipeline.train.run import TrainRun


def run_grass(profile: Profile | str, output_dir: str | Path | None = None, data_dir: str | Path | None = None,
              whisper: str | None = None, overwrite: bool = False, grass: GrassConfig | dict | None = None, **overrides) -> dict:
    """prepare -> features -> fit -> evaluate -> report of the GRASS variant, in-process.

    ``profile``: a Profile or a language code; ``whisper``: hub name or local transformers Whisper directory
    (default GrassConfig.whisper); ``grass`` / keyword overrides: GrassConfig fields (e.g. ``lr=1e-5``)."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    gr = GrassRun(profile, output_dir, data_dir, overwrite, grass, whisper=whisper, **overrides)
    out = {"variant": "grass", "whisper": gr.grass.whisper, "prepare": prepare(gr), "features": compute_features(gr), "fit": fit(gr)}
    metrics = evaluate(gr)
    out["report"] = str(write_report(gr))
    out["tasks"] = {k: v["scores"] for k, v in metrics["tasks"].items()}
    desta = gr.dir.parent
    if all((desta / f).exists() for f in ("metrics.json", "split.json", "train_log.jsonl", "predictions.jsonl")):
        # a scored DeSTA run next to it: its report gets the GRASS section
        out["desta_report"] = str(write_desta_report(TrainRun(profile, output_dir, data_dir)))
    return out
