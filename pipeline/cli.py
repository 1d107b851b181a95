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


def run_direct(profile, output_dir: str | None = None, overwrite: bool = False, report: bool = True,
               until: str | None = None) -> dict:
    """The same stages as the Prefect flow, called in-process (no orchestration server); ``until``: run the
    stages up to and including this one, then export what exists (pipeline.dataset.export.stages_until)."""
    from pipeline.dataset.export import finish, stages_until
    from pipeline.run.runner import Run, release_workers, run_stage

    stages = stages_until(until)
    run = Run(profile, output_dir, overwrite=overwrite)
    try:
        for stage in stages:
            run_stage(run, stage)
    finally:
        release_workers()
    manifest = finish(run, report, stages)
    return {t: v["rows"] for t, v in manifest["tables"].items()}


def _abs(p: str | None) -> str | None:
    """Paths given on the command line are relative to the current folder (not to the repository)."""
    return os.path.abspath(os.path.expanduser(p)) if p else p


def _say(lines) -> None:
    for line in lines:
        print(f"speechinstruct: {line}", file=sys.stderr)


def _user_profile(a):
    """The profile with the command line's explicit inputs (pipeline.run.inputs), its notes logged."""
    from pipeline.run.inputs import load_user_profile

    profile, notes = load_user_profile(a.lang, _abs(a.profile), _abs(a.input), _abs(getattr(a, "text_input", None)))
    return profile, notes


def cmd_dataset(a) -> int:
    from pipeline.run.inputs import preflight

    profile, notes = _user_profile(a)
    inputs = preflight(profile, _abs(a.output_dir), a.overwrite)  # every user error before anything runs
    _say(notes + inputs.notes)
    t0 = time.time()
    if a.no_prefect or a.profile:
        rows = run_direct(profile, _abs(a.output_dir), a.overwrite, not a.no_report, until=a.until)
    else:
        _prefect_env()
        from flows.dataset import dataset

        rows = dataset(lang=profile.language, input=_abs(a.input), text_input=_abs(a.text_input), output_dir=_abs(a.output_dir),
                       overwrite=a.overwrite, report=not a.no_report, **({"until": a.until} if a.until else {}))
    out = os.path.join(_abs(a.output_dir) or str(profile.path(profile.output_dir)), profile.language)
    print(json.dumps({"output": out, "rows": rows, "seconds": round(time.time() - t0, 1)}))
    return 0


def cmd_tts(a) -> int:
    from pipeline.run.inputs import load_user_profile, preflight

    text = _abs(a.text_input or a.input)
    profile, _ = load_user_profile(a.lang, None, None, text)
    profile = profile.model_copy(update={"input": None})  # text corpus only: no audio input
    preflight(profile, _abs(a.output_dir), a.overwrite)
    _say([f"text instruction corpus: {profile.tts.input}" + ("" if text else " (the profile's tts.input)"), "audio input: none"])
    _prefect_env()
    from flows.tts import tts

    rows = tts(lang=a.lang, text_input=text, output_dir=_abs(a.output_dir), overwrite=a.overwrite, report=not a.no_report)
    print(json.dumps({"rows": rows}))
    return 0


def cmd_plan(a) -> int:
    """`python -m pipeline plan` (make plan): the plan of a run, without running it."""
    from pipeline.run.preview import format_plan, make_plan

    profile, notes = _user_profile(a)
    plan = make_plan(profile, _abs(a.output_dir), notes, max_probe=a.max_probe)
    print(json.dumps(plan, indent=1) if a.json else format_plan(plan))
    return 0


def cmd_profile(a) -> int:
    """`python -m pipeline profile new NAME --from en` / `profile check FILE`."""
    from pipeline.run.inputs import load_user_profile, new_profile

    if a.action == "new":
        path = new_profile(a.name, a.from_lang, _abs(a.out), _abs(a.input), _abs(a.text_input), force=a.force)
        print(f"wrote {path}: edit it (input: is your audio), then\n"
              f"  python -m pipeline plan --profile {path}\n  python -m pipeline dataset --profile {path}")
        return 0
    profile, notes = load_user_profile(None, _abs(a.name))
    print(f"ok: {a.name}: profile {profile.name!r} ({profile.language}), digest {profile.digest()}")
    _say(notes)
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


def _input_args(ap) -> None:
    """--lang / --profile / --input / --text-input, shared by dataset and plan."""
    ap.add_argument("--lang", help="language profile (config/profiles/<lang>.yaml); optional with --profile")
    ap.add_argument("--profile", help="your own profile YAML (python -m pipeline profile new NAME --from en writes one)")
    ap.add_argument("--input", help="audio: a folder of files or a manifest (.jsonl/.json/.csv/.tsv); replaces the "
                    "profile's input (and then no text corpus is used unless --text-input is given)")
    ap.add_argument("--text-input", help="text instruction corpus to speak (Alpaca / Super-NaturalInstructions / MS MARCO); "
                    "replaces the profile's tts.input (and then no audio is used unless --input is given)")


USER_ERROR_HINTS = {  # user-error types defined outside pipeline.core.errors -> a hint line
    "ManifestError": "pipeline.run.inputs:MANIFEST_HINT",
}


def _user_error_types() -> tuple[type, ...]:
    """Exceptions that are the user's to fix: printed as one line (+ hint), exit status 2, no traceback."""
    from pipeline.core.config import UnknownLanguage
    from pipeline.core.errors import UserError
    from pipeline.recipes.audio import ManifestError
    from pipeline.run import plan

    return tuple(t for t in (UserError, UnknownLanguage, ManifestError, plan.PlanMismatch, getattr(plan, "RunBusy", None))
                 if isinstance(t, type))


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors (pipeline.core.errors.UserError and the like) print ``error: ...`` and
    ``hint: ...`` on stderr and exit 2; ``--debug`` (anywhere on the line, or SPEECHINSTRUCT_DEBUG=1)
    shows the traceback of every error instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("SPEECHINSTRUCT_DEBUG", "") not in ("", "0")
    argv = [x for x in argv if x != "--debug"]
    try:
        return _main(argv)
    except Exception as e:  # noqa: BLE001 (re-raised unless it is a user error)
        if debug or not isinstance(e, _user_error_types()):
            raise
        hint = getattr(e, "hint", None)
        if hint is None and type(e).__name__ in USER_ERROR_HINTS:
            from importlib import import_module

            mod, _, attr = USER_ERROR_HINTS[type(e).__name__].partition(":")
            hint = getattr(import_module(mod), attr)
        msg = " ".join(str(e).split())  # one line
        print(f"error: {msg}", file=sys.stderr)
        if hint:
            print(f"hint: {hint} (--debug shows the traceback)", file=sys.stderr)
        return 2


def _main(argv: list[str]) -> int:
    if argv[:1] == ["train"]:  # all of the train options (--variant grass, --set, --overwrite, --no-prefect ...)
        return train_main(argv[1:])
    ap = argparse.ArgumentParser(prog="speechinstruct", description="Speech-instruction training data from speech and text corpora.",
                                 epilog="--debug (anywhere): show the traceback of any error, user errors included")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset", help="build the dataset for a language profile (make dataset LANG=xx)")
    _input_args(d)
    d.add_argument("--output-dir", help="output root (tables go to <output-dir>/<lang>/); default: the profile's")
    d.add_argument("--overwrite", action="store_true", help="delete a previous run in the output dir first")
    d.add_argument("--no-prefect", action="store_true", help="run the stages in-process without Prefect")
    d.add_argument("--no-report", action="store_true", help="skip the HTML report")
    from pipeline.stages import ORDER as _STAGE_ORDER

    d.add_argument("--until", choices=_STAGE_ORDER, metavar="STAGE",
                   help=f"run the stages up to and including STAGE ({', '.join(_STAGE_ORDER)}) and export what exists "
                   "(e.g. --until asr: utterances with every metadata and ASR column + rejects, card, report; no LLM); "
                   "a later run without --until continues from there")
    d.set_defaults(fn=cmd_dataset)
    t = sub.add_parser("tts", help="speak a text instruction corpus only (make tts LANG=xx)")
    t.add_argument("--lang", required=True)
    t.add_argument("--text-input", "--input", dest="text_input",
                   help="Alpaca / Super-NaturalInstructions / MS MARCO file; default: the profile's tts.input")
    t.set_defaults(input=None)
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
    pl = sub.add_parser("plan", help="what a dataset run would do, without running it: files by format, audio hours, "
                        "finished shards, models per stage, time estimate (make plan LANG=xx)")
    _input_args(pl)
    pl.add_argument("--output-dir", help="output root (tables go to <output-dir>/<lang>/); default: the profile's")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    pl.add_argument("--max-probe", type=int, default=2000, help="read at most this many file headers (a random "
                    "sample beyond it; hours extrapolated)")
    pl.set_defaults(fn=cmd_plan)
    pr = sub.add_parser("profile", help="a profile of your own: `profile new NAME --from en` writes NAME.yaml to edit "
                        "(run it with --profile NAME.yaml); `profile check FILE` validates one")
    pr.add_argument("action", choices=["new", "check"])
    pr.add_argument("name", help="new: the profile's name (writes NAME.yaml); check: the YAML file")
    pr.add_argument("--from", dest="from_lang", default="en", help="new: the language profile to copy (default en)")
    pr.add_argument("--out", help="new: where to write it (default ./NAME.yaml)")
    pr.add_argument("--input", help="new: your audio folder or manifest")
    pr.add_argument("--text-input", help="new: your text instruction corpus (default: none)")
    pr.add_argument("--force", action="store_true", help="new: overwrite an existing file")
    pr.set_defaults(fn=cmd_profile)
    fl = sub.add_parser("filter", help="run the llm stage's quality checks on candidates made elsewhere (JSONL in: id, "
                        "task, transcript, seed_description, prompt, response; verdicts out: id, keep, reason, detail, scores)")
    fl.add_argument("--input", required=True, help="candidates, one JSON object a line")
    fl.add_argument("--output", required=True, help="verdicts, one JSON object a line (written atomically)")
    fl.add_argument("--lang", default="en", help="language profile (its llm section sets the checks and the model)")
    fl.add_argument("--profile", help="a profile YAML of your own instead of --lang's")
    fl.add_argument("--rules-only", action="store_true", help="no LLM: skip the QA round trip and the judge")
    fl.add_argument("--no-progress", action="store_true")
    fl.set_defaults(fn=lambda a: __import__("pipeline.stages.llm.filter", fromlist=["x"]).filter_command(a))
    r = sub.add_parser("report", help="(re)write the HTML report of a dataset dir")
    r.add_argument("dataset_dir")
    r.set_defaults(fn=cmd_report)
    a = ap.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
