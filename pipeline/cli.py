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
    from pipeline.dataset.export import finish
    from pipeline.run.runner import STAGES, Run, run_stage

    run = Run(profile, output_dir, overwrite=overwrite)
    for stage in STAGES:
        run_stage(run, stage)
    manifest = finish(run, report)
    return {t: v["rows"] for t, v in manifest["tables"].items()}


def cmd_dataset(a) -> int:
    from pipeline.core.config import UnknownLanguage, load_profile

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
    from pipeline import ROOT

    return os.spawnvpe(os.P_WAIT, "bash", ["bash", str(ROOT / "scripts" / "serve.sh")], {**os.environ, "PY": sys.executable})


def cmd_models(a) -> int:
    from pipeline.core.model_cache import REGISTRY, assemble, cache_dir

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
    from pipeline.core.config import known_languages, load_profile

    for lang in known_languages():
        p = load_profile(lang)
        print(f"{lang:6s} {p.name:20s} input={p.input}")
    return 0


def cmd_report(a) -> int:
    from pathlib import Path

    from pipeline.dataset.report import write_report

    print(write_report(Path(a.dataset_dir)))
    return 0


def train_main(argv: list[str] | None = None) -> int:
    """`python -m pipeline train ...` (make train): all of the train flow's options."""
    import json
    import time

    from pipeline.core.config import load_profile
    from pipeline.train.entry import parse_overrides, run_all, yaml_value

    ap = argparse.ArgumentParser(prog="python -m pipeline train", description="Train and score a DeSTA2-style speech LM on the shards.")
    ap.add_argument("--lang", required=True, help="language profile (config/profiles/<lang>.yaml)")
    ap.add_argument("--profile", help="explicit profile YAML")
    ap.add_argument("--output-dir", help="output root: reads <output-dir>/<lang>/, writes <output-dir>/<lang>/train/")
    ap.add_argument("--data-dir", help="dataset folder with utterances/ and instructions/ (default <output-dir>/<lang>)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="train config override, e.g. --set max_steps=50")
    ap.add_argument("--overwrite", action="store_true", help="start training again (the feature cache is kept)")
    ap.add_argument("--no-prefect", action="store_true", help="run in-process without Prefect")
    ap.add_argument("--variant", choices=("desta", "grass"), default="desta",
                    help="desta: adapter between a frozen Whisper encoder and a frozen LLM; grass: fine-tune a Whisper "
                         "decoder on the same examples and split (pipeline/train/grass/, writes train/grass/)")
    ap.add_argument("--whisper", help="grass: Whisper model, hub name or local transformers directory (default openai/whisper-small); "
                                      "other GRASS settings: --set grass.lr=1e-5 ...")
    a = ap.parse_args(argv)
    from pipeline.core.config import UnknownLanguage

    grass = {k.strip()[len("grass."):]: yaml_value(v) for k, _, v in (x.partition("=") for x in a.set or [])
             if k.strip().startswith("grass.")}
    if grass and a.variant != "grass":
        raise SystemExit("--set grass.* needs --variant grass")
    overrides = parse_overrides([x for x in a.set or [] if not x.strip().startswith("grass.")])
    try:
        profile = load_profile(a.lang, a.profile, **overrides)
    except UnknownLanguage as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    if a.variant == "grass" and (a.no_prefect or a.profile):
        from pipeline.train.grass.entry import run_grass

        out = run_grass(profile, a.output_dir, a.data_dir, whisper=a.whisper, overwrite=a.overwrite, grass=grass)
    elif a.variant == "grass":
        _prefect_env()
        from flows.train import train

        out = train(lang=a.lang, output_dir=a.output_dir, data_dir=a.data_dir, overwrite=a.overwrite, overrides=overrides,
                    variant="grass", whisper=a.whisper, grass=grass)
    elif a.no_prefect or a.profile:
        out = run_all(profile, a.output_dir, a.data_dir, a.overwrite)
    else:
        _prefect_env()
        from flows.train import train

        out = train(lang=a.lang, output_dir=a.output_dir, data_dir=a.data_dir, overwrite=a.overwrite, overrides=overrides)
    print(json.dumps({**out, "seconds": round(time.time() - t0, 1)}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # all of the train options (--variant grass, --set, --overwrite, --no-prefect ...)
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
