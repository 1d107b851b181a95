"""Command line: mirrors the make targets. `python -m pipeline --help`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def _prefect_env() -> None:
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def run_direct(profile, output_dir: str | None = None, overwrite: bool = False, report: bool = True) -> dict:
    """The same stages as the Prefect flow, called in-process (no orchestration server)."""
    from .export import export
    from .runner import STAGES, Run, run_stage

    run = Run(profile, output_dir, overwrite=overwrite)
    for stage in STAGES:
        run_stage(run, stage)
    manifest = export(run)
    if report:
        from .report import write_report

        write_report(run.dir)
    return {t: v["rows"] for t, v in manifest["tables"].items()}


def cmd_dataset(a) -> int:
    from .config import UnknownLanguage, load_profile

    try:
        profile = load_profile(a.lang, a.profile, **({"input": a.input} if a.input else {}))
    except UnknownLanguage as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    if a.no_prefect or a.profile:
        rows = run_direct(profile, a.output_dir, a.overwrite, not a.no_report)
    else:
        _prefect_env()
        from flows.dataset import dataset

        rows = dataset(lang=a.lang, input=a.input, output_dir=a.output_dir, overwrite=a.overwrite, report=not a.no_report)
    out = os.path.join(a.output_dir or str(profile.path(profile.output_dir)), profile.language)
    print(json.dumps({"output": out, "rows": rows, "seconds": round(time.time() - t0, 1)}))
    return 0


def cmd_tts(a) -> int:
    _prefect_env()
    from flows.tts import tts

    rows = tts(lang=a.lang, text_input=a.input, output_dir=a.output_dir, overwrite=a.overwrite, report=not a.no_report)
    print(json.dumps({"rows": rows}))
    return 0


def cmd_serve(a) -> int:
    from . import ROOT

    return os.spawnvpe(os.P_WAIT, "bash", ["bash", str(ROOT / "scripts" / "serve.sh")], {**os.environ, "PY": sys.executable})


def cmd_models(a) -> int:
    from .models import REGISTRY, assemble, cache_dir

    if a.action == "list":
        for name, m in REGISTRY.items():
            print(f"{name:32s} {m.licence:28s} {m.description}")
        return 0
    print(f"model cache: {cache_dir()}")
    for name in a.names or list(REGISTRY):
        t0 = time.time()
        d = assemble(name)
        print(f"  {name:32s} ok ({time.time() - t0:.1f} s) -> {d}")
    return 0


def cmd_profiles(a) -> int:
    from .config import known_languages, load_profile

    for lang in known_languages():
        p = load_profile(lang)
        print(f"{lang:6s} {p.name:20s} input={p.input}")
    return 0


def cmd_report(a) -> int:
    from pathlib import Path

    from .report import write_report

    print(write_report(Path(a.dataset_dir)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # all of pipeline.train's options (--variant grass, --set, --overwrite, --no-prefect ...)
        from .train import main as train_main

        return train_main(argv[1:])
    ap = argparse.ArgumentParser(prog="speechinstruct", description="Speech-instruction training data from speech and text corpora.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset", help="build the dataset for a language profile (make dataset LANG=xx)")
    d.add_argument("--lang", required=True, help="language profile (config/profiles/<lang>.yaml)")
    d.add_argument("--profile", help="explicit profile YAML instead of config/profiles/<lang>.yaml")
    d.add_argument("--input", help="folder of audio or manifest (.jsonl/.csv); default: the profile's")
    d.add_argument("--output-dir", help="output root (tables go to <output-dir>/<lang>/); default: the profile's")
    d.add_argument("--overwrite", action="store_true", help="delete a previous run in the output dir first")
    d.add_argument("--no-prefect", action="store_true", help="run the stages in-process without Prefect")
    d.add_argument("--no-report", action="store_true", help="skip the HTML report")
    d.set_defaults(fn=cmd_dataset)
    t = sub.add_parser("tts", help="speak a text instruction corpus only (make tts LANG=xx)")
    t.add_argument("--lang", required=True)
    t.add_argument("--input", help="Alpaca / Super-NaturalInstructions / MS MARCO file; default: the profile's tts.input")
    t.add_argument("--output-dir")
    t.add_argument("--overwrite", action="store_true")
    t.add_argument("--no-report", action="store_true")
    t.set_defaults(fn=cmd_tts)
    sub.add_parser("train", help="train + score a small speech LM on <output-dir>/<lang> (make train LANG=xx); "
                   "options: python -m pipeline train --help")
    sv = sub.add_parser("serve", help="local Prefect server + work pool + deployments + worker (make serve)")
    sv.set_defaults(fn=cmd_serve)
    m = sub.add_parser("models", help="embedded model cache")
    m.add_argument("action", choices=["assemble", "list"])
    m.add_argument("names", nargs="*")
    m.set_defaults(fn=cmd_models)
    p = sub.add_parser("profiles", help="list language profiles")
    p.set_defaults(fn=cmd_profiles)
    r = sub.add_parser("report", help="(re)write the HTML report of a dataset dir")
    r.add_argument("dataset_dir")
    r.set_defaults(fn=cmd_report)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
