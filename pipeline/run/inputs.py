"""A run's inputs, explicit: which profile, which audio, which text corpus, checked before anything runs.

* ``--input`` (audio: a folder or a manifest) and ``--text-input`` (a text instruction corpus) each replace the
  profile's. Giving either one replaces *both*: ``--input`` alone does not pull in the profile's sample text
  corpus (and ``--text-input`` alone not its sample audio); ``notes`` say so, for the log and the dataset card.
* Every mistake a user can make here (a missing input, a bad manifest line, an unknown profile key, ...) is a
  :class:`pipeline.core.errors.UserError` with one line of message and one of hint.
* ``new_profile`` writes a commented profile YAML to edit, copied from a language profile.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.core.config import PROFILE_DIR, Profile, UnknownLanguage, known_languages, load_profile
from pipeline.core.errors import InputError, ProfileError, UserError
from pipeline.recipes.audio import MANIFEST_SUFFIXES, ManifestError, Source, discover

MANIFEST_HINT = ('a manifest has one JSON object per line (.jsonl), a JSON array (.json) or a header row (.csv/.tsv); '
                 'each record needs "path" (relative to the manifest\'s folder), optional "text", "speaker", "labels"')
INPUT_HINT = "--input takes a folder of audio files or a manifest (" + ", ".join(sorted(MANIFEST_SUFFIXES)) + ")"
TEXT_HINT = "--text-input takes an Alpaca JSON/JSONL, a Super-NaturalInstructions task file or an MS MARCO JSONL file"


def explicit_inputs(input: str | None, text_input: str | None) -> dict[str, Any]:
    """Profile overrides for the inputs a user named: none named => {} (the profile's own inputs); else both
    keys, the one not named set to None, so nothing of the profile's (sample) inputs is mixed in."""
    if input is None and text_input is None:
        return {}
    return {"input": input, "tts.input": text_input}


def _fields_at(loc: tuple) -> list[str]:
    """Field names of the profile section at ``loc`` (for "did you mean" hints)."""
    model: type[BaseModel] | None = Profile
    for key in loc:
        f = model.model_fields.get(str(key)) if model else None
        ann = getattr(f, "annotation", None)
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return []
    return list(model.model_fields)


def describe_validation(e: ValidationError, where: str) -> ProfileError:
    errs = e.errors()
    first = errs[0]
    loc = tuple(first.get("loc", ()))
    key = ".".join(str(x) for x in loc)
    more = f" (and {len(errs) - 1} more problem(s))" if len(errs) > 1 else ""
    if first.get("type") == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1]), n=1, cutoff=0.6) if loc else []
        section = ".".join(str(x) for x in loc[:-1])
        hint = (f"did you mean {'.'.join([*map(str, loc[:-1]), close[0]])!r}?" if close else
                f"known keys{' of ' + section if section else ''}: {', '.join(_fields_at(loc[:-1]))[:300]}")
        return ProfileError(f"{where}: unknown profile key {key!r}{more}", hint)
    if first.get("type") == "missing":
        return ProfileError(f"{where}: required profile key {key!r} is missing{more}",
                            "python -m pipeline profile new NAME --from en writes a complete profile to edit")
    return ProfileError(f"{where}: {key}: {first.get('msg')} (got {first.get('input')!r}){more}",
                        "the profile's keys and types are the pydantic models in pipeline/core/config.py")


def _resolve_relative(profile: Profile, base: Path) -> Profile:
    """Relative paths in a user's profile file are relative to that file's folder."""
    upd: dict[str, Any] = {}
    for key in ("input", "output_dir"):
        v = getattr(profile, key)
        if v and not Path(v).is_absolute():
            upd[key] = str((base / v).resolve())
    if profile.tts.input and not Path(profile.tts.input).is_absolute():
        upd["tts"] = profile.tts.model_copy(update={"input": str((base / profile.tts.input).resolve())})
    return profile.model_copy(update=upd) if upd else profile


@dataclass
class Inputs:
    """The checked inputs of one run: the profile to run, what was discovered, and what to tell the user."""

    profile: Profile
    sources: list[Source] = field(default_factory=list)
    n_texts: int = 0
    n_text_rejects: int = 0
    notes: list[str] = field(default_factory=list)
    plan: Any = None  # pipeline.run.plan.Plan


def load_user_profile(lang: str | None, profile_path: str | Path | None = None, input: str | None = None,
                      text_input: str | None = None, overrides: dict[str, Any] | None = None) -> tuple[Profile, list[str]]:
    """The profile of a run with explicit inputs applied; raises UserError for every user mistake.
    Returns (profile, notes), notes being lines for the log saying which inputs go in."""
    where = str(profile_path) if profile_path else f"config/profiles/{lang}.yaml"
    if profile_path is not None:
        pp = Path(profile_path)
        if not pp.is_file():
            raise ProfileError(f"profile file {pp} does not exist",
                               "write one with: python -m pipeline profile new NAME --from en")
    given = explicit_inputs(input, text_input)
    try:
        profile = load_profile(lang, profile_path, **{**given, **(overrides or {})})
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()
        raise ProfileError(f"{where}: not valid YAML ({' '.join(first[:2])[:200]})",
                           "check the indentation and quoting near that line") from e
    except ValidationError as e:
        raise describe_validation(e, where) from e
    except AttributeError as e:  # a dotted override into a key that is not a section (e.g. "asr.model.x")
        raise ProfileError(f"{where}: cannot apply overrides {list(overrides or {})}: {e}") from e
    if profile_path is not None:
        if lang and profile.language != lang:
            raise ProfileError(f"{where} is a profile for language {profile.language!r}, not --lang {lang!r}",
                               "leave out --lang with --profile, or pass the profile's language")
        pp = Path(profile_path).resolve()
        if pp.parent != PROFILE_DIR.resolve():
            profile = _resolve_relative(profile, pp.parent)
    notes = []
    src = "--input" if "input" in given else f"profile {where}"
    tsrc = "--text-input" if "tts.input" in given else f"profile {where}"
    notes.append(f"audio input: {profile.input} (from {src})" if profile.input else "audio input: none")
    if profile.tts.input:
        notes.append(f"text instruction corpus: {profile.tts.input} (from {tsrc})")
    elif given and input is not None:
        default = _profile_default_text(lang, profile_path)
        notes.append("text instruction corpus: none" + (
            f" (the profile's {default} is not used when --input is given; add --text-input FILE to speak one)"
            if default else ""))
    else:
        notes.append("text instruction corpus: none")
    return profile, notes


def _profile_default_text(lang: str | None, profile_path) -> str | None:
    try:
        return load_profile(lang, profile_path).tts.input
    except Exception:  # noqa: BLE001 (only for a note)
        return None


def check_inputs(profile: Profile) -> Inputs:
    """Discover and read the inputs the way the run will (pipeline.run.plan.build_plan, nothing written),
    raising InputError for what a user must fix. ``sources`` has one Source per input file."""
    from pipeline.run.plan import build_plan

    out = Inputs(profile)
    if not profile.input and not profile.tts.input:
        raise InputError("nothing to do: the run has no audio input and no text instruction corpus",
                         "pass --input FOLDER_OR_MANIFEST (audio) and/or --text-input FILE (text instructions)")
    if profile.input and not profile.path(profile.input).exists():
        raise InputError(f"input {profile.path(profile.input)} does not exist", INPUT_HINT)
    if profile.tts.input and not profile.path(profile.tts.input).is_file():
        raise InputError(f"text instruction corpus {profile.path(profile.tts.input)} does not exist", TEXT_HINT)
    try:
        out.plan = build_plan(profile)
    except ManifestError as e:
        raise InputError(f"bad manifest line: {e}", MANIFEST_HINT) from e
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as e:
        raise InputError(f"an input cannot be read: {e}", MANIFEST_HINT) from e
    except ValueError as e:  # read_corpus: a text file it cannot read or recognise
        raise InputError(f"text instruction corpus {Path(profile.tts.input or '').name}: {e}", TEXT_HINT) from e
    seen: dict[str, Source] = {}
    for d in out.plan.sources:  # a long file planned as spans is one input file
        seen.setdefault(d["rel"], Source(**d))
    out.sources = list(seen.values())
    out.n_texts, out.n_text_rejects = len(out.plan.texts), len(out.plan.text_rejects)
    if profile.input and not out.sources:
        raise InputError(f"input {profile.path(profile.input)} lists no files", INPUT_HINT)
    if profile.tts.input and not out.n_texts and not out.n_text_rejects:
        raise InputError(f"text instruction corpus {profile.path(profile.tts.input)} has no records", TEXT_HINT)
    missing = sum(1 for s in out.sources if not Path(s.path).exists())
    if missing:
        out.notes.append(f"{missing} of {len(out.sources)} listed file(s) do not exist: they will be rejected as "
                         "'missing' (manifest paths are relative to the manifest's folder)")
    return out


def previous_run_mismatch(profile: Profile, output_dir: str | Path | None) -> str | None:
    """Why the output folder holds another run (its plan.json differs from this profile and its inputs), or
    None (no run there, or the same run: it resumes). Compares the way ``Run`` does; writes nothing."""
    from pipeline.run.plan import PlanMismatch, Run

    run_dir = Path(output_dir or profile.path(profile.output_dir)) / profile.language
    if not (run_dir / "_work" / "plan.json").exists():
        return None
    try:
        Run(profile, run_dir.parent, attach=True)._plan()  # with a plan.json present this only compares
    except PlanMismatch as e:
        return str(e)
    except (OSError, ValueError, TypeError):  # an unreadable plan: the run itself decides
        return None
    return None


def preflight(profile: Profile, output_dir: str | Path | None, overwrite: bool = False) -> Inputs:
    """Everything a run checks before it starts, without writing anything: inputs, then the output folder."""
    inputs = check_inputs(profile)
    if not overwrite:
        why = previous_run_mismatch(profile, output_dir)
        if why:
            raise UserError("output folder " + why.split("; pass --overwrite")[0],
                            "pass --overwrite to delete it and start again, or choose another --output-dir")
    return inputs


# ---- profile new ------------------------------------------------------------------------------------
HEADER = """# {name}: your own speechinstruct profile (made by `python -m pipeline profile new {name} --from {src}`).
# Run it:      python -m pipeline dataset --profile {file}        (in-process; add --no-report to skip the HTML)
# Check it:    python -m pipeline plan --profile {file}           (files, hours, models, time estimate; runs nothing)
# Relative paths below are relative to this file's folder. Unknown keys are refused (every key and its default:
# the pydantic models in pipeline/core/config.py). Comments after a value show the production (GPU) settings.
"""


def _set_line(text: str, key: str, value: Any, indent: str = "", comment: str = "") -> str:
    """Replace the first ``<indent>key: ...`` line (keeping its trailing comment unless ``comment``)."""
    rendered = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()[1:-1].strip()
    pat = re.compile(rf"^{indent}{re.escape(key)}:[^\n#]*(#[^\n]*)?$", re.M)
    m = pat.search(text)
    if not m:
        raise ProfileError(f"the source profile has no line '{indent}{key}:'")
    new = f"{indent}{rendered}"
    note = comment or (m.group(1) or "")
    new = f"{new:<37s} {note}".rstrip() if note else new
    return text[:m.start()] + new + text[m.end():]


def new_profile(name: str, from_lang: str, out: str | Path | None = None, input: str | None = None,
                text_input: str | None = None, force: bool = False) -> Path:
    """Write ``<name>.yaml`` (or ``out``): the ``from_lang`` profile with its comments, renamed, with your inputs
    (the samples' inputs removed), writing to ``data/`` next to it. Validated before it is written."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UserError(f"profile name {name!r} must be letters, digits, '-', '_' or '.'", "e.g. my-corpus")
    if from_lang not in known_languages():
        raise UnknownLanguage(f"unknown language profile {from_lang!r}; known profiles: {', '.join(known_languages())}")
    dest = Path(out) if out else Path(f"{name}.yaml")
    if dest.exists() and not force:
        raise UserError(f"{dest} already exists", "pass --force to overwrite it, or --out another path")
    text = (PROFILE_DIR / f"{from_lang}.yaml").read_text()
    text = re.sub(r"\A(#[^\n]*\n)+", "", text)  # the source's own title comment
    text = _set_line(text, "name", name)
    text = _set_line(text, "dataset", name, comment="# written to instructions.dataset and the dataset card")
    text = _set_line(text, "input", str(Path(input).resolve()) if input else None,
                     comment="# YOUR AUDIO: a folder of files, or a manifest (.jsonl/.json/.csv/.tsv)")
    text = _set_line(text, "output_dir", "data", comment="# tables go to <output_dir>/<language>/")
    text = _set_line(text, "input", str(Path(text_input).resolve()) if text_input else None, indent="  ",
                     comment="# text instructions to speak (Alpaca / SNI / MS MARCO); null: none")
    body = HEADER.format(name=name, src=from_lang, file=dest) + text
    data = yaml.safe_load(body)
    try:
        Profile.model_validate(data)
    except ValidationError as e:  # a bug in this function, not the user's
        raise RuntimeError(f"generated profile does not validate: {e}") from e
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(body)
    tmp.replace(dest)
    return dest
