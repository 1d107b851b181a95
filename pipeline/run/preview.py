"""The plan of a run before it runs (``python -m pipeline plan``): what goes in, what is already done, which
models each stage loads, and how long each stage should take on this machine. Also the ETA of progress bars.

Audio hours come from file headers (soundfile, else ffprobe), read in parallel; no file is decoded. Time per
stage comes from measured throughput: the last run's ``_work/timings.json`` divided by that run's row counts
(its shard files), else the stored calibration ``config/calibration.json``. The result says which.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import soundfile as sf

from pipeline import ROOT
from pipeline.core.audio import AUDIO_EXTENSIONS
from pipeline.core.config import Profile
from pipeline.recipes.audio import Source
from pipeline.stages import ORDER, SOURCES, STAGES, TEXTS

CALIBRATION = ROOT / "config" / "calibration.json"
EXTRA_AUDIO = {".au", ".caf", ".w64"}  # what ingest also accepts (pipeline.stages.ingest)
AUDIO_BOUND = {"ingest", "metadata", "asr"}  # stages whose cost follows seconds of audio, not rows
MAX_PROBE = 2000  # header reads; beyond this a random sample is read and the hours extrapolated


# ---- headers -------------------------------------------------------------------------------------
def probe(path: str | Path) -> dict:
    """Format and duration of one file from its header: {"ext", "format", "seconds", "problem"}."""
    p = Path(path)
    ext = p.suffix.lower() or "(none)"
    out: dict[str, Any] = {"ext": ext, "format": None, "seconds": None, "problem": None}
    if not p.is_file():
        out["problem"] = "missing"
    elif p.stat().st_size == 0:
        out["problem"] = "empty"
    elif ext not in AUDIO_EXTENSIONS and ext not in EXTRA_AUDIO:
        out["problem"] = "not_audio"
    else:
        try:
            info = sf.info(str(p))
            out["format"], out["seconds"] = info.format.lower(), info.frames / info.samplerate if info.samplerate else 0.0
        except Exception:  # noqa: BLE001 (libsndfile cannot read it: ask ffprobe)
            out.update(_ffprobe(p))
        if out["problem"] is None and not out["seconds"]:
            out["problem"] = "zero_length"
    return out


def _ffprobe(p: Path) -> dict:
    if shutil.which("ffprobe") is None:
        return {"problem": "corrupt"}
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration", "-of", "json", str(p)],
                       capture_output=True, text=True, timeout=60)
    try:
        fmt = json.loads(r.stdout or "{}").get("format", {})
        return {"format": fmt["format_name"].split(",")[0], "seconds": float(fmt.get("duration") or 0.0)}
    except (KeyError, ValueError, TypeError):
        return {"problem": "corrupt"}  # neither libsndfile nor ffmpeg can read it: ingest rejects it as corrupt


@contextlib.contextmanager
def _quiet_stderr():
    """libsndfile's mpg123 prints notes about damaged MP3 headers to fd 2; a plan reports them itself."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def probe_sources(sources: list[Source], max_probe: int = MAX_PROBE, workers: int | None = None) -> dict:
    """Files by format, total audio hours and header-level problems; a sample when there are many files."""
    sample = sources
    if len(sources) > max_probe:
        sample = random.Random(0).sample(sources, max_probe)
    with _quiet_stderr(), ThreadPoolExecutor(max_workers=workers or min(16, 2 * (os.cpu_count() or 1))) as ex:
        infos = list(ex.map(lambda s: probe(s.path), sample))
    scale = len(sources) / max(len(sample), 1)
    by_ext: dict[str, dict] = {}
    problems: dict[str, list[str]] = {}
    for s, i in zip(sample, infos):
        e = by_ext.setdefault(i["ext"], {"files": 0, "seconds": 0.0})
        e["files"] += 1
        e["seconds"] += i["seconds"] or 0.0
        if i["problem"]:
            problems.setdefault(i["problem"], []).append(s.rel)
    for e in by_ext.values():
        e["files"] = round(e["files"] * scale)
        e["seconds"] = round(e["seconds"] * scale, 2)
    seconds = sum(e["seconds"] for e in by_ext.values())
    return {"files": len(sources), "probed": len(sample), "sampled": len(sample) < len(sources),
            "by_format": dict(sorted(by_ext.items(), key=lambda kv: -kv[1]["files"])),
            "audio_seconds": round(seconds, 2), "audio_hours": round(seconds / 3600, 4),
            "problems": {k: {"files": round(len(v) * scale), "examples": v[:3]} for k, v in sorted(problems.items())}}


# ---- models per stage (from the registries) ----------------------------------------------------------
def _model(ref: str) -> str:
    from pipeline.core.model_cache import EMBEDDED_PREFIX, REGISTRY, cache_dir

    if not ref.startswith(EMBEDDED_PREFIX):
        return ref
    name = ref[len(EMBEDDED_PREFIX):]
    m = REGISTRY.get(name)
    if m is None:
        return f"{ref} (not an embedded model!)"
    ready = "assembled" if (cache_dir() / name / "MODEL_INFO.json").exists() else "not assembled yet: make setup"
    return f"{ref} ({m.description}; {ready})"


def _entry(registry, name: str) -> dict:
    try:
        e = registry.entry(name)
    except Exception as ex:  # noqa: BLE001 (unknown backend: shown, the run would fail)
        return {"backend": name, "doc": str(ex), "missing": []}
    return {"backend": f"{registry.family}:{name}", "doc": e.doc, "missing": e.missing()}


def stage_models(profile: Profile) -> dict[str, list[dict]]:
    """What each stage loads, from the backend registries (nothing is loaded here)."""
    from pipeline.backends.asr import ASR
    from pipeline.backends.llm import LLM
    from pipeline.backends.metadata import KINDS, NOT_ESTIMATORS, selected
    from pipeline.backends.tts import TTS
    from pipeline.backends.vad import VAD

    p = profile
    md = []
    for kind, (reg, _) in KINDS.items():
        name = selected(kind, p.metadata)
        if name in NOT_ESTIMATORS.get(kind, ()):
            if name not in ("none",):
                md.append({"backend": f"{kind}:{name}", "doc": "no model (handled by a rule or another stage)", "missing": []})
            continue
        md.append(_entry(reg, name))
    asr = {**_entry(ASR, p.asr.backend), "model": _model(p.asr.model)}
    llm = {**_entry(LLM, p.llm.backend), "model": _model(p.llm.model)}
    out = {
        "ingest": [{**_entry(VAD, p.ingest.vad.backend), "model": "silero-vad (weights in the wheel)"}],
        "metadata": md,
        "asr": [asr],
        "llm": [llm] + ([{"backend": "judge", "doc": "LLM judge", "model": _model(p.llm.judge_model or p.llm.model)}]
                        if p.llm.judge else []),
        "tts": [{**_entry(TTS, p.tts.backend), "model": ", ".join(_model(v) for v in p.tts.voices)}]
        + ([{**asr, "doc": "ASR round-trip gate"}] if p.tts.gate_max_wer is not None else []),
    }
    return {s: out.get(s, []) for s in ORDER}


# ---- measured throughput -------------------------------------------------------------------------
def _rows(path: Path) -> int:
    return pq.read_metadata(path).num_rows if path.exists() else 0


def _seconds(path: Path) -> float:
    if not path.exists():
        return 0.0
    return float(sum(x or 0 for x in pq.read_table(path, columns=["duration_s"]).column("duration_s").to_pylist()))


def measure(run_dir: str | Path, audio: bool = True) -> dict | None:
    """Throughput of a finished (or partly finished) run folder: per stage, wall seconds (timings.json) over
    the units it processed (rows of its input shards; audio seconds too for audio-bound stages, from the
    shards, and for the input files from their headers unless ``audio=False``)."""
    d = Path(run_dir)
    tp, pp = d / "_work" / "timings.json", d / "_work" / "plan.json"
    if not tp.exists() or not pp.exists():
        return None
    try:
        timings, plan = json.loads(tp.read_text()), json.loads(pp.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    from pipeline.run.sources import plan_records

    srcs, texts = plan_records(d / "_work", plan)  # the chunked source table (or a format-1 plan's lists)
    stages: dict[str, dict] = {}
    for name in ORDER:
        if not isinstance(timings.get(name), (int, float)):
            continue
        cls = STAGES.get(name)
        parts = sorted((d / "_work" / name).glob("part-*.parquet"))
        out_rows = sum(_rows(f) for f in parts)
        if cls.reads == SOURCES:
            probed = probe_sources([Source(**s) for s in srcs]) if srcs and audio else None
            in_rows = len(srcs)
            in_s = probed["audio_seconds"] if probed and not probed["problems"].get("missing") else None
        elif cls.reads == TEXTS:
            in_rows, in_s = len(texts), None
        else:
            ins = [d / "_work" / cls.reads / f.name for f in parts]
            in_rows, in_s = sum(_rows(f) for f in ins), (sum(_seconds(f) for f in ins) if name in AUDIO_BOUND else None)
        out_s = sum(_seconds(f) for f in parts) if cls.writes == "utterances" else None
        stages[name] = {"seconds": timings[name], "rows_in": in_rows, "rows_out": out_rows,
                        "audio_s_in": round(in_s, 2) if in_s else None, "audio_s_out": round(out_s, 2) if out_s else None}
    return {"run": str(d), "profile_digest": plan.get("profile_digest"), "stages": stages}


def find_measurement(profile: Profile, run_dir: Path, audio: bool = True) -> tuple[dict, dict[str, str]]:
    """Measured throughput per stage: from this output folder's last run, else the profile's default output
    folder's, else the stored calibration (the first that timed the stage). Returns ({"stages": ...},
    {stage: where its figures come from})."""
    stages: dict[str, dict] = {}
    where: dict[str, str] = {}
    seen: list[Path] = []
    for d in (run_dir, profile.path(profile.output_dir) / profile.language, ROOT / "data" / profile.language):
        d = Path(d).resolve()
        if d in seen or not (d / "_work" / "timings.json").exists():
            continue
        seen.append(d)
        m = measure(d, audio=audio)
        if not m:
            continue
        label = f"measured: last run in {d}" + ("" if m["profile_digest"] == profile.digest() else " (another profile)")
        for s, v in m["stages"].items():
            if s not in stages:
                stages[s], where[s] = v, label
    if CALIBRATION.exists() and any(s not in stages for s in ORDER):
        c = json.loads(CALIBRATION.read_text())
        for s, v in c.get("stages", {}).items():
            if s not in stages:
                stages[s], where[s] = v, f"stored calibration {CALIBRATION.relative_to(ROOT)} ({c.get('measured_on', '?')})"
    return {"stages": stages}, where


def estimate(profile: Profile, meas: dict | None, files: int, audio_s: float | None, texts: int,
             pending_share: dict[str, float] | None = None) -> dict[str, dict]:
    """Per stage: predicted units in and wall seconds, chaining the measured out/in ratios from stage to stage."""
    st = (meas or {}).get("stages", {})
    out: dict[str, dict] = {}
    rows_out: dict[str, float] = {}
    audio_out: dict[str, float | None] = {}
    for name in ORDER:
        cls = STAGES.get(name)
        m = st.get(name)
        if cls.reads == SOURCES:
            rows_in, a_in = float(files), audio_s
        elif cls.reads == TEXTS:
            rows_in, a_in = float(texts), None
        else:
            rows_in, a_in = rows_out.get(cls.reads, 0.0), audio_out.get(cls.reads)
        secs, unit = None, None
        if m and rows_in:
            if name in AUDIO_BOUND and a_in and m.get("audio_s_in"):
                secs, unit = m["seconds"] / m["audio_s_in"] * a_in, "audio s"
            elif m.get("rows_in"):
                secs, unit = m["seconds"] / m["rows_in"] * rows_in, "row"
        elif not rows_in:
            secs = 0.0
        ratio = (m["rows_out"] / m["rows_in"]) if m and m.get("rows_in") else None
        if cls.reads == SOURCES and m and m.get("audio_s_in") and a_in:  # utterances per second of input audio
            rows_out[name] = m["rows_out"] / m["audio_s_in"] * a_in
        else:
            rows_out[name] = rows_in * ratio if ratio is not None else rows_in
        if cls.writes == "utterances":
            if m and m.get("audio_s_out") and (m.get("audio_s_in") or m.get("rows_in")):
                base = (a_in, m.get("audio_s_in")) if a_in and m.get("audio_s_in") else (rows_in, m.get("rows_in"))
                audio_out[name] = m["audio_s_out"] / base[1] * base[0] if base[1] else a_in
            else:
                audio_out[name] = a_in
        share = (pending_share or {}).get(name, 1.0)
        out[name] = {"rows_in": round(rows_in, 1), "audio_s_in": round(a_in, 1) if a_in and name in AUDIO_BOUND else None,
                     "rows_out": round(rows_out[name], 1), "per": unit,
                     "seconds": round(secs * share, 1) if secs is not None else None}
    return out


# ---- the plan ------------------------------------------------------------------------------------
def existing_run(profile: Profile, run_dir: Path) -> dict | None:
    """What an output folder already holds: the same run (shards done per stage) or another run."""
    from pipeline.run.inputs import previous_run_mismatch
    from pipeline.run.plan import Run

    if not (run_dir / "_work" / "plan.json").exists():
        return None
    why = previous_run_mismatch(profile, run_dir.parent)
    if why:
        return {"same": False, "why": why.split("; pass --overwrite")[0]}
    run = Run(profile, run_dir.parent, attach=True)
    done = {}
    for s in ORDER:
        ids = run.shard_ids(s)
        done[s] = {"done": sum(1 for k in ids if run.part(s, k).exists()), "shards": len(ids)}
    return {"same": True, "stages": done, "exported": (run_dir / "_manifest.json").exists()}


def make_plan(profile: Profile, output_dir: str | Path | None = None, notes: list[str] | None = None,
              max_probe: int = MAX_PROBE) -> dict:
    """The whole preview (a dict; ``format_plan`` renders it). Inputs are checked like a run checks them."""
    from pipeline.run.inputs import check_inputs

    inputs = check_inputs(profile)
    run_dir = Path(output_dir or profile.path(profile.output_dir)) / profile.language
    audio = probe_sources(inputs.sources, max_probe) if inputs.sources else None
    n_texts = inputs.n_texts
    shards = {s: (inputs.plan.n_tts_shards if STAGES.get(s).reads == TEXTS else inputs.plan.n_shards) for s in ORDER}
    prev = existing_run(profile, run_dir)
    pending_share = None
    if prev and prev["same"]:
        pending_share = {s: 1 - v["done"] / v["shards"] if v["shards"] else 0.0 for s, v in prev["stages"].items()}
    meas, where = find_measurement(profile, run_dir)
    usable_audio = audio["audio_seconds"] if audio else None
    est = estimate(profile, meas, len(inputs.sources), usable_audio, n_texts, pending_share)
    total = sum(e["seconds"] or 0 for e in est.values())
    return {
        "profile": {"language": profile.language, "name": profile.name, "dataset": profile.dataset,
                    "digest": profile.digest(), "shard_size": profile.shard_size},
        "output": str(run_dir), "notes": (notes or []) + inputs.notes,
        "audio_input": profile.input, "audio": audio,
        "text_input": profile.tts.input, "texts": n_texts, "text_rejects": inputs.n_text_rejects,
        "shard_size": profile.shard_size, "shards": shards, "existing_run": prev, "models": stage_models(profile),
        "estimate": {"sources": where, "stages": est, "total_seconds": round(total, 1),
                     "note": "from measured wall time per row / per audio second (model loading included), "
                             "scaled to these inputs; a different profile or machine load changes it"},
    }


def _hms(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def format_plan(plan: dict) -> str:
    L = [f"plan for {plan['profile']['name']} ({plan['profile']['language']}), dataset {plan['profile']['dataset']!r}, "
         f"profile digest {plan['profile']['digest']}", f"output: {plan['output']}"]
    L += [f"  {n}" for n in plan["notes"]]
    a = plan["audio"]
    if a:
        L.append(f"audio: {plan['audio_input']}: {a['files']} files, {a['audio_hours']:.3f} h "
                 f"({a['audio_seconds'] / 60:.1f} min) from headers" + (f", extrapolated from {a['probed']} sampled files"
                                                                       if a["sampled"] else ""))
        for ext, e in a["by_format"].items():
            L.append(f"  {ext:8s} {e['files']:6d} files {e['seconds'] / 60:9.1f} min")
        for why, p in a["problems"].items():
            L.append(f"  will be rejected at ingest: {why}: {p['files']} (e.g. {', '.join(p['examples'])})")
        L.append("  (from headers only: damaged contents, silence and too-short clips are found by ingest)")
    else:
        L.append("audio: none")
    L.append(f"text instructions: {plan['text_input']}: {plan['texts']} records"
             + (f" (+{plan['text_rejects']} rejected when read)" if plan["text_rejects"] else "")
             if plan["text_input"] else "text instructions: none")
    prev = plan["existing_run"]
    if prev is None:
        L.append("existing run: none (a new run)")
    elif not prev["same"]:
        L.append(f"existing run: another one; {prev['why']}: `dataset` would refuse it "
                 "(--overwrite deletes it, or choose another --output-dir)")
    else:
        L.append("existing run: the same run; finished shards: " + ", ".join(
            f"{s} {v['done']}/{v['shards']}" for s, v in prev["stages"].items()) + (" (exported)" if prev["exported"] else ""))
    L.append("stages (shards; models; estimated wall time):")
    est = plan["estimate"]["stages"]
    for s in plan["shards"]:
        e = est.get(s, {})
        per = f", {e['rows_in']:g} rows in" + (f" / {e['audio_s_in'] / 60:.1f} min audio" if e.get("audio_s_in") else "")
        L.append(f"  {s:9s} {plan['shards'][s]:5d} shards{per}  ~{_hms(e.get('seconds'))}")
        for m in plan["models"].get(s, []):
            miss = f"  MISSING: pip install {' '.join(m['missing'])}" if m.get("missing") else ""
            L.append(f"      {m['backend']}" + (f" {m['model']}" if m.get("model") else "") + f" - {m.get('doc', '')}{miss}")
    L.append(f"estimated total: ~{_hms(plan['estimate']['total_seconds'])}; figures per row / audio second from:")
    by: dict[str, list[str]] = {}
    for s, w in plan["estimate"]["sources"].items():
        by.setdefault(w, []).append(s)
    L += [f"  {', '.join(v)}: {w}" for w, v in by.items()] or ["  nothing measured yet: run once (or keep config/calibration.json)"]
    return "\n".join(L)


# ---- ETA for progress bars ----------------------------------------------------------------------------
class Eta:
    """Remaining time of a stage: shard sizes (input rows) times the seconds per row seen so far in this run,
    or, before the first shard ends, the measured/calibrated seconds per row."""

    def __init__(self, run, stage: str, todo: list[int]):
        self.t_done_units, self.elapsed = 0.0, 0.0
        reads = STAGES.get(stage).reads
        units = {}
        for k in todo:
            if reads == SOURCES:
                units[k] = len(run.sources(k))
            elif reads == TEXTS:
                units[k] = len(run.texts(k))
            else:
                units[k] = _rows(run.part(reads, k))
        self.units, self.left = units, float(sum(units.values()))
        m = find_measurement(run.profile, run.dir, audio=False)[0]["stages"].get(stage)
        self.prior = m["seconds"] / m["rows_in"] if m and m.get("rows_in") else None

    @classmethod
    def start(cls, run, stage: str, todo: list[int]) -> "Eta | None":
        """An Eta, or None when it cannot be made (an ETA never stops a run)."""
        try:
            return cls(run, stage, todo)
        except Exception:  # noqa: BLE001
            return None

    def update(self, k: int | None, elapsed: float) -> str:
        if k is not None:
            u = self.units.pop(k, 0)
            self.t_done_units += u
            self.left -= u
        rate = elapsed / self.t_done_units if self.t_done_units else self.prior
        return _hms(max(self.left, 0.0) * rate) if rate is not None else "?"
