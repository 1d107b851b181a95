"""In-process entry points of the DeSTA run: run_all (the steps of the Prefect flow ``train``) and the
``--set key=value`` override parser of ``python -m pipeline train``."""
from __future__ import annotations

from pipeline.core.config import Profile
from pipeline.train.evaluate import evaluate
from pipeline.train.loop import fit
from pipeline.train.report import write_report
from pipeline.train.run import TrainRun, compute_features, prepare


def run_all(profile: Profile, output_dir: str | None = None, data_dir: str | None = None, overwrite: bool = False) -> dict:
    """The same steps as the Prefect flow `train`, in-process."""
    tr = TrainRun(profile, output_dir, data_dir, overwrite)
    out = {"prepare": prepare(tr), "features": compute_features(tr), "fit": fit(tr)}
    metrics = evaluate(tr)
    out["report"] = str(write_report(tr))
    out["tasks"] = {k: v["scores"] for k, v in metrics["tasks"].items()}
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """`--set max_steps=50 --set adapter=qformer` -> {"train.max_steps": "50", ...} (dotted profile keys;
    keys outside train need their section, e.g. `--set train.lr=3e-4`)."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise SystemExit(f"--set needs key=value, got {it!r}")
        k = k.strip()
        out[k if k.startswith("train.") else f"train.{k}"] = yaml_value(v)
    return out


def yaml_value(v: str):
    import yaml

    return yaml.safe_load(v)
