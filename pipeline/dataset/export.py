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


def export(run: Run) -> dict:
    """Write the final shards (one per work shard with rows; skipped when present), then manifest and card."""
    n, m = run.plan.n_shards, run.plan.n_tts_shards
    stages = [stage_class(name) for name in ORDER]
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
    if run.plan.text_rejects:
        jobs.append(("rejects", n + m, []))
    binner = dataset_binner(run)  # dataset-wide metadata bins (pipeline/dataset/bins.py), computed on first use
    for table, k, inputs in jobs:
        out = run.dir / table / store.part_name(k)
        if out.exists():
            continue
        if table == "rejects" and k == n + m:
            t = schema.to_table("rejects", [{**r, "stage": text_stages[0], "source_path": run.profile.tts.input} for r in run.plan.text_rejects])
        else:
            missing = [p for p in inputs if not p.exists() and "rejects-" not in p.name]
            if missing:
                raise RuntimeError(f"cannot export {table} shard {k}: stage output {missing[0]} is missing (run the stages first)")
            t = _concat(table, inputs)
            if table == "utterances":
                t = binner(t)
        if t.num_rows:  # no empty shards: readers (datasets) choke on 0-row Parquet files
            store.write_atomic(t, out)
    check_accounting(run)
    manifest = write_manifest(run)
    write_card(run, manifest)
    return manifest


def check_accounting(run: Run) -> dict:
    """Every input file must be in utterances or in rejects (by its path)."""
    seen = set()
    for table in ("utterances", "rejects"):
        files = sorted((run.dir / table).glob("part-*.parquet"))
        for f in files:
            seen.update(x for x in pq.read_table(f, columns=["source_path"]).column("source_path").to_pylist() if x)
    missing = [s["rel"] for s in run.plan.sources if s["rel"] not in seen]
    if missing:
        raise AccountingError(f"{len(missing)} input file(s) are in neither utterances nor rejects: {missing[:5]}")
    return {"sources": len(run.plan.sources), "accounted": len(run.plan.sources)}


def write_manifest(run: Run) -> dict:
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
        "profile_digest": p.digest(), "input": p.input, "sources": len(run.plan.sources), "texts": len(run.plan.texts),
        "audio_hours": round(audio_s / 3600, 4),
        "models": {"asr": f"{p.asr.backend}:{p.asr.model}", "llm": f"{p.llm.backend}:{p.llm.model}",
                   "tts": f"{p.tts.backend}:{','.join(p.tts.voices)}", "vad": "silero-vad (onnx)",
                   "gender": p.metadata.gender_backend},
        "stage_seconds": run.timings, "reject_reasons": dict(sorted(rejects.items())), "tables": tables,
    }
    tmp = run.dir / f"._manifest.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(run.dir / "_manifest.json")
    return manifest


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

Made by speechinstruct {__version__} from `{p.input}` with profile `{p.language}` (digest `{manifest['profile_digest']}`)
on {manifest['created']}. {manifest['sources']} input files, {manifest['audio_hours'] * 60:.1f} minutes of kept speech.

| table | rows | shards |
|---|---|---|
{rows}

```python
from datasets import load_dataset
ds = load_dataset("parquet", data_files="{run.dir}/instructions/part-*.parquet", split="train")
ds[0]["audio"]  # decoded by the Audio feature (16 kHz)
```

Models: {', '.join(f'{k}: `{v}`' for k, v in manifest['models'].items())}.
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


def finish(run: Run, report: bool = True) -> dict:
    """Export the final tables (manifest, card) and, with ``report``, the HTML dataset report."""
    manifest = export(run)
    if report:
        from pipeline.dataset.report import write_report

        write_report(run.dir)
    return manifest
