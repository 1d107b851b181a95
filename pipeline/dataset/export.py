"""Final tables: utterances / instructions / rejects shards, _manifest.json and a dataset card."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.core import schema, store
from pipeline.dataset.bins import dataset_binner
from pipeline.dataset.language import language_section, language_support
from pipeline.run.plan import Run, stage_class
from pipeline.stages import ORDER, TEXTS


class AccountingError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def _concat(table: str, paths: list[Path]) -> pa.Table:
    parts = [schema.conform(table, store.read(p)) for p in paths if p.exists()]
    return pa.concat_tables(parts) if parts else schema.to_table(table, [])


def _concat_checked(run: Run, table: str, paths: list[Path]) -> pa.Table:
    """``_concat`` that never exports a damaged work part: a part (or rejects part) that fails its
    checksums is moved aside with its shard's other file, the shard is redone, and the read repeated."""
    from pipeline.run.runner import process_shard

    for _ in range(3):
        try:
            return _concat(table, paths)
        except store.CorruptPart as e:
            stage, k = e.path.parent.name, int(e.path.stem.rsplit("-", 1)[1])
            for p in (run.part(stage, k), run.rejects_part(stage, k)):
                if p.exists():
                    store.quarantine(p, f"export of {table} shard {k}: {e.detail}")
            process_shard(run, stage, k)
    return _concat(table, paths)


def stages_until(until: str | None) -> tuple[str, ...]:
    """The stages a run with ``--until STAGE`` runs: ORDER up to and including ``until`` (None: all of them)."""
    if until is None:
        return tuple(ORDER)
    if until not in ORDER:
        raise ValueError(f"--until {until!r}: not a stage (stages in run order: {', '.join(ORDER)})")
    return tuple(ORDER[: ORDER.index(until) + 1])


def _exported_stages(run: Run) -> list[str] | None:
    try:
        return json.loads((run.dir / "_manifest.json").read_text()).get("stages", list(ORDER))
    except (OSError, ValueError):
        return None


def export(run: Run, stages: tuple[str, ...] | None = None) -> dict:
    """Write the final tables (parts of consecutive shards sized by ``export.part_rows`` / ``part_mb``, cross-shard
    duplicates left out; a whole part whose inputs are unchanged is kept), then manifest and card.

    ``stages``: the prefix of ORDER that ran (``--until``; None: every stage). The final tables hold what those
    stages made (a prefix without an instruction stage exports utterances and rejects only). When the previous
    export was of another prefix, its final shards are removed first, so a later run continues and re-exports."""
    n, m = run.plan.n_shards, run.plan.n_tts_shards
    ran = tuple(stages) if stages is not None else tuple(ORDER)
    before = _exported_stages(run)
    if before is not None and tuple(before) != ran:
        for table in schema.TABLES:
            for f in sorted((run.dir / table).glob("part-*.parquet")):
                f.unlink()
    stages = [stage_class(name) for name in ORDER if name in ran]
    shard_stages = [c.name for c in stages if c.reads != TEXTS]  # shards cut from the input files
    text_stages = [c.name for c in stages if c.reads == TEXTS]  # shards cut from the text corpus
    made = {c.name: c.writes for c in stages}
    last_utterances = [s for s in shard_stages if made[s] == "utterances"][-1]
    jobs: list[tuple[str, int, list[Path]]] = []
    for k in range(n):
        jobs.append(("utterances", k, [run.part(last_utterances, k)]))
        jobs.append(("instructions", k, [run.part(s, k) for s in shard_stages if made[s] == "instructions"]))
        jobs.append(("rejects", k, [run.rejects_part(s, k) for s in shard_stages]))
    for j in range(m):
        jobs.append(("instructions", n + j, [run.part(s, j) for s in text_stages if made[s] == "instructions"]))
        jobs.append(("rejects", n + j, [run.rejects_part(s, j) for s in text_stages]))
    if run.plan.text_rejects and text_stages:
        jobs.append(("rejects", n + m, []))
    binner = dataset_binner(run)  # dataset-wide metadata bins (pipeline/dataset/bins.py), computed on first use
    _compact(run, jobs, n, m, binner, ran, last_utterances, [s for s in shard_stages if made[s] == "instructions"],
             [s for s in text_stages if made[s] == "instructions"], text_stages)
    for f in sorted(run.dir.glob("*/part-*.parquet")):  # never a manifest over a torn table
        if f.parent.name in schema.TABLES and (bad := store.check(f)) is not None:
            raise store.CorruptPart(f, bad)
    check_accounting(run)
    manifest = write_manifest(run, ran)
    write_card(run, manifest)
    return manifest


def _compact(run: Run, jobs, n: int, m: int, binner, ran, last_utterances: str, inst_stages: list[str],
             text_inst_stages: list[str], text_stages: list[str]) -> None:
    """The final tables from the work shards: dataset-wide dedup (pipeline/dataset/dedup.py, ``export.dedup``), then
    parts sized for readers by a streaming compaction (pipeline/dataset/compact.py, ``export.part_rows/part_mb``)."""
    from pipeline.dataset import compact, dedup

    drops = dedup.find(run, last_utterances, inst_stages, text_inst_stages)
    bins_key = ""
    if any(t == "utterances" for t, _, _ in jobs):
        binner(schema.to_table("utterances", []))  # the dataset-wide edges, computed once
        bins_path = run.dir / "_bins.json"
        bins_key = _sha256(bins_path) if bins_path.exists() else ""

    def loader(table: str, k: int, inputs: list[Path]):
        def load():
            if table == "rejects" and k == n + m:
                return schema.to_table("rejects", [{**r, "stage": text_stages[0], "source_path": run.profile.tts.input}
                                                   for r in run.plan.text_rejects])
            if table == "rejects" and k == n + m + 1:
                return schema.to_table("rejects", drops.rejects)
            missing = [p for p in inputs if not p.exists() and "rejects-" not in p.name]
            if missing:
                raise RuntimeError(f"cannot export {table} shard {k}: stage output {missing[0]} is missing (run the stages first)")
            t = drops.filter(table, k if k < n else ("t", k - n), _concat_checked(run, table, inputs))
            return binner(t) if table == "utterances" else t
        return load

    if drops.rejects:
        jobs = jobs + [("rejects", n + m + 1, [])]
    hints = {n + m: len(run.plan.text_rejects), n + m + 1: len(drops.rejects)}
    for table in schema.TABLES:
        key = "|".join([",".join(ran), drops.digest] + ([bins_key] if table == "utterances" else []))
        compact.write_table(run, table, [compact.Job(k, loader(t, k, inputs), inputs, hints.get(k) if t == "rejects" and k >= n + m else None)
                                         for t, k, inputs in jobs if t == table], content_key=key)


def check_accounting(run: Run) -> dict:
    """Every input file must be in utterances or in rejects (by its path)."""
    seen = set()
    for table in ("utterances", "rejects"):
        files = sorted((run.dir / table).glob("part-*.parquet"))
        for f in files:
            seen.update(x for x in store.read(f, columns=["source_path"]).column("source_path").to_pylist() if x)
    files = run.plan.files  # a long file planned as spans counts once
    missing = [f for f in files if f not in seen]
    if missing:
        raise AccountingError(f"{len(missing)} input file(s) are in neither utterances nor rejects: {missing[:5]}")
    return {"sources": len(files), "accounted": len(files)}


def write_manifest(run: Run, stages: tuple[str, ...] | None = None) -> dict:
    tables = {}
    for table in schema.TABLES:
        files = []
        for f in sorted((run.dir / table).glob("part-*.parquet")):
            md = pq.read_metadata(f)
            files.append({"path": f"{table}/{f.name}", "rows": md.num_rows, "bytes": f.stat().st_size, "sha256": _sha256(f)})
        tables[table] = {"rows": sum(x["rows"] for x in files), "files": files}
    audio_s = 0.0
    for f in sorted((run.dir / "utterances").glob("part-*.parquet")):
        audio_s += float(pa.compute.sum(pq.read_table(f, columns=["duration_s"]).column("duration_s")).as_py() or 0)
    rejects = {}
    for f in sorted((run.dir / "rejects").glob("part-*.parquet")):
        t = pq.read_table(f, columns=["stage", "reason"]).to_pylist()
        for r in t:
            key = f"{r['stage']}:{r['reason']}"
            rejects[key] = rejects.get(key, 0) + 1
    p = run.profile
    manifest = {
        "name": p.dataset, "language": p.language, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "speechinstruct_version": __version__, "python": platform.python_version(),
        "profile_digest": p.digest(), "input": p.input, "sources": len(run.plan.files), "texts": len(run.plan.texts),
        "inputs": inputs_of(run),
        "audio_hours": round(audio_s / 3600, 4),
        "models": {"asr": f"{p.asr.backend}:{p.asr.model}", "llm": f"{p.llm.backend}:{p.llm.model}",
                   "tts": f"{p.tts.backend}:{','.join(p.tts.voices)}", "vad": "silero-vad (onnx)",
                   "gender": p.metadata.gender_backend},
        "language_support": language_support(p),
        "stage_seconds": run.timings, "reject_reasons": dict(sorted(rejects.items())), "tables": tables,
        "stages": list(stages if stages is not None else ORDER),
    }
    tmp = run.dir / f"._manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(run.dir / "_manifest.json")
    return manifest


def inputs_of(run: Run) -> list[dict]:
    """Every input that went into the run (the card and _manifest.json list them): the audio input and the
    text instruction corpus, each with its row count, or marked absent."""
    p = run.profile
    return [
        {"kind": "audio", "path": p.input, "files": len(run.plan.sources)},
        {"kind": "text instructions", "path": p.tts.input, "records": len(run.plan.texts),
         "rejected_when_read": len(run.plan.text_rejects)},
    ]


def _inputs_text(inputs: list[dict]) -> str:
    lines = []
    for i in inputs:
        if not i.get("path"):
            lines.append(f"- {i['kind']}: none (not given for this run; nothing of the kind was used)")
            continue
        n = f"{i['files']} files" if "files" in i else f"{i.get('records', 0)} records" + (
            f", {i['rejected_when_read']} rejected when read" if i.get("rejected_when_read") else "")
        lines.append(f"- {i['kind']}: `{i['path']}` ({n})")
    return "\n".join(lines)


def _partial_text(manifest: dict) -> str:
    ran = manifest.get("stages") or list(ORDER)
    if list(ran) == list(ORDER):
        return ""
    rest = [s for s in ORDER if s not in ran]
    return (f"\n**Partial run** (`--until {ran[-1]}`): stages {', '.join(ran)} ran; {', '.join(rest)} did not, so the "
            f"tables hold only what those stages made. Run again without `--until` to continue.\n")


def write_card(run: Run, manifest: dict) -> Path:
    p = run.profile
    configs = "\n".join(f"- config_name: {t}\n  data_files: {t}/part-*.parquet" + ("\n  default: true" if t == "instructions" else "")
                        for t in schema.TABLES)
    rows = "\n".join(f"| {t} | {manifest['tables'][t]['rows']} | {len(manifest['tables'][t]['files'])} |" for t in schema.TABLES)
    reasons = "\n".join(f"| {k} | {v} |" for k, v in manifest["reject_reasons"].items()) or "| (none) | 0 |"
    text = f"""---
language:
- {p.language}
license: other
task_categories:
- automatic-speech-recognition
- audio-classification
- question-answering
configs:
{configs}
---
# {p.dataset} ({p.name}) speech-instruction data

Made by speechinstruct {__version__} with profile `{p.language}` (digest `{manifest['profile_digest']}`)
on {manifest['created']}. {manifest['sources']} input files, {manifest['audio_hours'] * 60:.1f} minutes of kept speech.
{_partial_text(manifest)}

## Inputs
{_inputs_text(manifest.get('inputs') or inputs_of(run))}

| table | rows | shards |
|---|---|---|
{rows}

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_files="{run.dir}/instructions/part-*.parquet", split="train")
ds[0]["audio"]  # decoded by the Audio feature (16 kHz)
```

Models: {', '.join(f'{k}: `{v}`' for k, v in manifest['models'].items())}.

{language_section(p)}
The LLM responses come from a small embedded model unless the profile names a production one; check
`engine` / `model_id` per row. Attributes no model estimated (e.g. emotion) are absent, never guessed.

## Reject reasons
| stage:reason | rows |
|---|---|
{reasons}

## Columns
### utterances
{schema.describe('utterances')}

### instructions
{schema.describe('instructions')}

### rejects
{schema.describe('rejects')}
"""
    out = run.dir / "README.md"
    tmp = run.dir / f".README.md.tmp-{os.getpid()}"
    tmp.write_text(text)
    tmp.replace(out)
    return out


def finish(run: Run, report: bool = True, stages: tuple[str, ...] | None = None) -> dict:
    """Export the final tables (manifest, card) and, with ``report``, the HTML dataset report. ``stages``: the
    prefix of the stages that ran (``--until``), None for all."""
    from pipeline.run.runner import exclusive

    with exclusive(run, "export"):  # several processes of one run: one exports, the others wait for it
        manifest = export(run, stages)
        if report:
            from pipeline.dataset.report import write_report

            write_report(run.dir)
    return manifest
