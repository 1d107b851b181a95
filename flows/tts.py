"""`tts` flow: speak a text instruction corpus only (no speech input), same shard format."""
from __future__ import annotations

from typing import Any

from prefect import flow

from flows.dataset import run_stages
from pipeline.core.config import load_profile
from pipeline.run.runner import Run


@flow(name="tts", log_prints=True)
def tts(lang: str, text_input: str | None = None, output_dir: str | None = None, overwrite: bool = False,
        report: bool = True, overrides: dict[str, Any] | None = None) -> dict:
    """Synthesize ``text_input`` (Alpaca / Super-NaturalInstructions / MS MARCO file; default: the
    profile's tts.input) with the profile's voices into <output_dir>/<lang>/."""
    profile = load_profile(lang, **{**(overrides or {}), **({"tts.input": text_input} if text_input else {})})
    profile = profile.model_copy(update={"input": None})
    from pipeline.run.inputs import preflight

    preflight(profile, output_dir, overwrite)  # a missing or unreadable corpus: one clear error before any stage
    Run(profile, output_dir, overwrite=overwrite)
    return run_stages(profile, output_dir, report, stages=("tts",))
