"""The plan's source and text tables: Parquet chunks read per shard, streaming and incremental discovery.

Layout (``<run>/_work/``)::

    plan.json                    small header: digest, shard counts, generations, changes (O(1) to read)
    sources/chunk-NNNNN.parquet  the sources of shards [N * C, (N + 1) * C), one row each (C: chunk_shards)
    texts/chunk-NNNNN.parquet    the text records of TTS shards [N * C', (N + 1) * C') (C': text_chunk_shards)

A shard worker (``Run(..., attach=True)``) reads the header and, for its shard, one chunk file: a cost
that does not grow with the dataset (issue 20; bench/bench_scale.py measures it at 10^4 .. 10^6 sources).

Discovery streams: a folder is walked in sorted order (the order ``recipes.audio.discover`` gives), a JSONL
manifest is read line by line, and sources go to the chunk writer in batches, so memory holds 16 bytes
per source (key and fingerprint hashes) rather than the records. A later run of the same profile
discovers again and compares by key (the file's ``rel`` and span): files that are new become new shards
after the last one (finished shards keep their numbers and outputs); files whose fingerprint (size,
mtime, manifest record) changed and files that disappeared are reported (``changes`` in the header, a
warning), never silently mixed in.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.recipes.audio import MANIFEST_SUFFIXES, Source, _from_record, read_manifest, split_long

FORMAT = 2
CHUNK_ROWS = 4096  # about this many sources per chunk file: a chunk holds max(1, CHUNK_ROWS // shard_size) shards
BATCH = 4096  # sources per discovery batch
SOURCE_FIELDS = ("path", "rel", "text", "speaker", "labels", "span", "n_spans", "duration_s")
SPAN_FIELDS = ("span", "n_spans", "duration_s")
SOURCE_SCHEMA = pa.schema([
    ("shard", pa.int64()), ("path", pa.string()), ("rel", pa.string()), ("text", pa.string()),
    ("speaker", pa.string()), ("labels_json", pa.string()), ("span", pa.int64()), ("n_spans", pa.int64()),
    ("duration_s", pa.float64()), ("key", pa.int64()), ("fp", pa.int64()),
])
TEXT_SCHEMA = pa.schema([("shard", pa.int64()), ("record_json", pa.string()), ("key", pa.int64())])
HIDDEN_CHANGES = 20  # changed / removed paths listed by name in the header (the counts are always complete)


class PlanMismatch(RuntimeError):
    """The output folder holds a run of another profile or input (pipeline.run.plan re-exports it)."""


def h64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little", signed=True)


# ---- streaming discovery ------------------------------------------------------------------------------
def _walk(folder: Path) -> Iterator[Path]:
    """Files under ``folder`` in the order of ``sorted(folder.rglob('*'))`` (by path parts), hidden names
    (any part starting with '.') skipped, symlinked folders not entered: the files discover() lists."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir(follow_symlinks=False):
            yield from _walk(Path(e.path))
        elif e.is_file():
            yield Path(e.path)


def iter_discover(input_path: Path) -> Iterator[Source]:
    """``recipes.audio.discover`` as a stream (a JSONL manifest is read line by line)."""
    if not input_path.exists():
        raise FileNotFoundError(f"input {input_path} does not exist")
    if input_path.is_file():
        if input_path.suffix.lower() == ".jsonl":
            from pipeline.recipes.audio import ManifestError

            with open(input_path) as f:
                for i, line in enumerate(f):
                    if line.strip():
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError as e:
                            raise ManifestError(f"{input_path.name}:{i + 1}: not valid JSON ({e})") from e
                        yield _from_record(rec, input_path.parent, f"{input_path.name}:{i + 1}")
            return
        if input_path.suffix.lower() in MANIFEST_SUFFIXES:
            yield from read_manifest(input_path)
            return
        yield Source(path=str(input_path), rel=input_path.name)
        return
    for p in _walk(input_path):
        yield Source(path=str(p), rel=str(p.relative_to(input_path)))


def _fingerprint(s: Source) -> int:
    """What says a listed file is still the same: its manifest record and its size and mtime."""
    try:
        st = os.stat(s.path)
        f = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        f = "missing"
    return h64(json.dumps([s.text, s.speaker, s.labels, s.path, f], sort_keys=True, default=str))


def planned_sources(profile) -> Iterator[list[dict]]:
    """The run's sources in batches of records (long files split into spans, fingerprints added)."""
    input_path = profile.path(profile.input)
    if not input_path:
        return
    batch: list[Source] = []

    def flush(batch):
        out = []
        for s in split_long(batch, profile.ingest.long_file_span_s):
            d = s.dump()
            d["key"] = h64(f"{s.rel}\0{s.span}")
            d["fp"] = _fingerprint(s)
            out.append(d)
        return out

    for s in iter_discover(input_path):
        batch.append(s)
        if len(batch) >= BATCH:
            yield flush(batch)
            batch = []
    if batch:
        yield flush(batch)


def planned_texts(profile) -> tuple[list[dict], list[dict]]:
    if not profile.tts.input:
        return [], []
    from pipeline.recipes.text import read_corpus

    recs, rej = read_corpus(profile.path(profile.tts.input))
    return [r.model_dump() for r in recs], [{"id": i, "reason": reason, "detail": detail} for i, reason, detail in rej]


# ---- shard assignment and chunk writing -----------------------------------------------------------------
class ShardCutter:
    """``plan.shard_starts`` as a stream: up to ``shard_size`` files a shard, a span of a long file alone."""

    def __init__(self, shard_size: int, first_shard: int):
        self.size, self.k, self.n = shard_size, first_shard - 1, shard_size

    def __call__(self, d: dict) -> int:
        if d.get("span") is not None or self.n >= self.size:
            self.k += 1
            self.n = 0
        self.n = self.size if d.get("span") is not None else self.n + 1
        return self.k


class ChunkWriter:
    """Rows with a ``shard`` column, in shard order, to ``folder/chunk-NNNNN.parquet`` (atomic per chunk).
    A chunk that already holds shards (the last one of an earlier generation) is read and extended."""

    def __init__(self, folder: Path, schema: pa.Schema, keep_below: int, chunk_shards: int):
        self.folder, self.schema, self.keep_below, self.per = folder, schema, keep_below, chunk_shards
        self.folder.mkdir(parents=True, exist_ok=True)
        self.c: int | None = None
        self.rows: list[dict] = []

    def add(self, row: dict) -> None:
        c = row["shard"] // self.per
        if c != self.c:
            self.flush()
            self.c = c
            old = self.folder / f"chunk-{c:05d}.parquet"
            # rows of shards past the header's count were left by a planner that died before its header write
            self.rows = [r for r in pq.read_table(old).to_pylist() if r["shard"] < self.keep_below] if old.exists() else []
        self.rows.append(row)

    def flush(self) -> None:
        if self.c is None or not self.rows:
            return
        path = self.folder / f"chunk-{self.c:05d}.parquet"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        t = pa.Table.from_pylist(self.rows, schema=self.schema)
        shard = t.column("shard").to_numpy()
        cuts = np.flatnonzero(np.r_[True, shard[1:] != shard[:-1], True])
        with pq.ParquetWriter(tmp, self.schema, compression="zstd") as w:  # one row group per shard: read alone
            for a, b in zip(cuts[:-1], cuts[1:]):
                w.write_table(t.slice(a, b - a), row_group_size=b - a)
        os.replace(tmp, path)
        self.rows = []


def _source_row(d: dict, k: int) -> dict:
    return {"shard": k, "path": d["path"], "rel": d["rel"], "text": d.get("text"), "speaker": d.get("speaker"),
            "labels_json": json.dumps(d.get("labels") or {}, ensure_ascii=False), "span": d.get("span"),
            "n_spans": d.get("n_spans"), "duration_s": d.get("duration_s"), "key": d["key"], "fp": d["fp"]}


def _source_dict(r: dict) -> dict:
    """A chunk row back to the plan record ``Source.dump()`` gives (span fields only for spans)."""
    d = {"path": r["path"], "rel": r["rel"], "text": r["text"], "speaker": r["speaker"], "labels": json.loads(r["labels_json"])}
    for f in SPAN_FIELDS:
        if r.get(f) is not None:
            d[f] = r[f]
    return d


@lru_cache(maxsize=4)
def _chunk(path: str, mtime_ns: int) -> pq.ParquetFile:
    return pq.ParquetFile(path)


def read_shard(folder: Path, k: int, chunk_shards: int) -> list[dict]:
    """The rows of shard ``k``: one chunk file read (cached per process while it is unchanged)."""
    p = folder / f"chunk-{k // chunk_shards:05d}.parquet"
    try:
        st = p.stat()
    except FileNotFoundError:
        return []
    f = _chunk(str(p), st.st_mtime_ns)
    i = k % chunk_shards  # row group i holds shard k when every shard of the chunk has rows (always, as written)
    if i < f.metadata.num_row_groups:
        rows = f.read_row_group(i).to_pylist()
        if rows and all(r["shard"] == k for r in rows):
            return rows
    return [r for r in f.read().to_pylist() if r["shard"] == k]


def iter_rows(folder: Path, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Every chunk of ``folder`` in shard order (streams: one chunk in memory)."""
    for p in sorted(folder.glob("chunk-*.parquet")):
        yield pq.read_table(p, columns=columns)


# ---- the stored plan -----------------------------------------------------------------------------------
class StoredPlan:
    """A plan of format 2, read lazily: the header at once, sources and texts per shard from their chunks.
    Whole-dataset views (``sources``, ``files``, ``texts``) stream every chunk: for export and tests only."""

    def __init__(self, work: Path, header: dict):
        self.work, self.header = work, header
        for k in ("language", "profile_digest", "input", "shard_size", "tts_shard_size", "n_shards",
                  "n_tts_shards", "text_rejects"):
            setattr(self, k, header[k])

    def shard_sources(self, k: int) -> list[dict]:
        return [_source_dict(r) for r in read_shard(self.work / "sources", k, self.header["chunk_shards"])]

    def shard_texts(self, k: int) -> list[dict]:
        return [json.loads(r["record_json"]) for r in read_shard(self.work / "texts", k, self.header["text_chunk_shards"])]

    @property
    def sources(self) -> list[dict]:
        return [_source_dict(r) for t in iter_rows(self.work / "sources") for r in t.to_pylist()]

    def iter_files(self) -> Iterator[str]:
        last = None
        for t in iter_rows(self.work / "sources", ["rel"]):
            for rel in t.column("rel").to_pylist():
                if rel != last:  # spans of one file are consecutive
                    yield rel
                last = rel

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(self.iter_files()))

    @property
    def texts(self) -> list[dict]:
        return [json.loads(x) for t in iter_rows(self.work / "texts", ["record_json"]) for x in t.column("record_json").to_pylist()]

    @property
    def changes(self) -> dict:
        return self.header.get("changes", {})


def plan_records(work: Path, header: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(sources, texts) of a stored plan of either format (every record: for previews and measurements)."""
    header = header if header is not None else read_header(work)
    if header.get("format") != FORMAT:
        return header.get("sources", []), header.get("texts", [])
    plan = StoredPlan(work, header)
    return plan.sources, plan.texts


def read_header(work: Path) -> dict:
    return json.loads((work / "plan.json").read_text())


def load(work: Path, legacy):
    """The stored plan of a run folder: a StoredPlan (format 2) or, for a plan.json of format 1 (every source
    inline), ``legacy(**header)`` (pipeline.run.plan.Plan)."""
    header = read_header(work)
    if header.get("format") == FORMAT:
        return StoredPlan(work, header)
    return legacy(**header)


def _write_header(work: Path, header: dict, exclusive: bool = False) -> bool:
    path = work / "plan.json"
    tmp = path.with_name(f".plan.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(header, indent=1, ensure_ascii=False))
    if not exclusive:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # never overwrites: two processes planning at once keep the first plan
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _old_keys(work: Path, table: str, cols: list[str], n_shards: int) -> dict[str, np.ndarray]:
    """Key columns of the planned rows (shards below ``n_shards``: rows past it belong to no header)."""
    import pyarrow.compute as pc

    parts = [t.filter(pc.less(t.column("shard"), n_shards)) for t in iter_rows(work / table, cols + ["shard"])]
    return {c: (np.concatenate([t.column(c).to_numpy() for t in parts]) if parts else np.zeros(0, np.int64)) for c in cols}


def _staged(profile, work: Path, write: bool = True) -> tuple[Path, int]:
    """Stream discovery into a temp Parquet file (records + key + fp); returns (path, rows). Not writing, the
    temp goes to the system's temp folder (nothing appears in the run folder)."""
    import tempfile

    folder = work if write else Path(tempfile.gettempdir())
    tmp = folder / f".discovery.tmp-{os.getpid()}-{time.monotonic_ns()}.parquet"
    writer, n = None, 0
    try:
        for batch in planned_sources(profile):
            t = pa.Table.from_pylist([_source_row(d, -1) for d in batch], schema=SOURCE_SCHEMA)
            writer = writer or pq.ParquetWriter(tmp, SOURCE_SCHEMA, compression="zstd")
            writer.write_table(t)
            n += t.num_rows
    finally:
        if writer:
            writer.close()
    return tmp, n


def _diff_report(work: Path, staged: Path | None, new_mask_keys: np.ndarray, changed_keys: np.ndarray,
                 removed_keys: np.ndarray) -> dict:
    def names(folder_or_file, keys):
        if not len(keys):
            return []
        ks, out = set(int(x) for x in keys[:HIDDEN_CHANGES * 4]), []
        tables = [pq.read_table(folder_or_file, columns=["rel", "key"])] if isinstance(folder_or_file, Path) and folder_or_file.is_file() \
            else iter_rows(folder_or_file, ["rel", "key"])
        for t in tables:
            for rel, k in zip(t.column("rel").to_pylist(), t.column("key").to_pylist()):
                if k in ks and rel not in out:
                    out.append(rel)
        return out[:HIDDEN_CHANGES]

    return {"new": int(len(new_mask_keys)), "changed": int(len(changed_keys)), "removed": int(len(removed_keys)),
            "changed_files": names(staged, changed_keys) if staged else [],
            "removed_files": names(work / "sources", removed_keys)}


def plan_run(profile, work: Path, legacy, write: bool = True) -> "StoredPlan":
    """Discover the inputs and write (first run) or extend (new files) the stored plan; with ``write=False``
    only compare (PlanMismatch for another profile) and return the stored plan with ``pending`` set to what
    a run would add or report. A plan.json of format 1 (``legacy``: the Plan class) is converted on the first
    writing run."""
    path = work / "plan.json"
    exists = path.exists()
    header = read_header(work) if exists else None
    if header is not None and header.get("profile_digest") != profile.digest():
        raise PlanMismatch(
            f"{work.parent} holds a run with a different profile or input (digest {header.get('profile_digest')} vs "
            f"{profile.digest()}); pass --overwrite to start again or choose another --output-dir")
    if header is not None and header.get("format") != FORMAT:
        header = _convert(profile, work, header, write, legacy)
        if header is None:  # format 1 read without writing
            return legacy(**read_header(work))
    texts, text_rejects = planned_texts(profile)
    staged, n_staged = _staged(profile, work, write) if (write or header is not None) else (None, 0)
    try:
        if header is None and not write:
            raise FileNotFoundError(path)
        if header is None:
            header = _new_header(profile, text_rejects)
        if not exists:  # chunks without a header: left by a first planner that died; start them again
            for sub in ("sources", "texts"):
                for f in (work / sub).glob("chunk-*.parquet"):
                    f.unlink()
        old = _old_keys(work, "sources", ["key", "fp"], header["n_shards"])
        new = pq.read_table(staged, columns=["key", "fp"]) if n_staged else None
        nk = new.column("key").to_numpy() if new is not None else np.zeros(0, np.int64)
        nf = new.column("fp").to_numpy() if new is not None else np.zeros(0, np.int64)
        is_new = ~np.isin(nk, old["key"])
        removed = old["key"][~np.isin(old["key"], nk)]
        order = np.argsort(old["key"])
        both = nk[~is_new]
        pos = order[np.searchsorted(old["key"][order], both)] if len(both) else np.zeros(0, np.int64)
        changed = both[old["fp"][pos] != nf[~is_new]] if len(both) else np.zeros(0, np.int64)
        told = _old_keys(work, "texts", ["key"], header["n_tts_shards"])["key"]
        tkeys = np.array([h64(json.dumps(r, sort_keys=True, default=str)) for r in texts], dtype=np.int64)
        tnew = ~np.isin(tkeys, told)
        changes = _diff_report(work, staged if n_staged else None, nk[is_new], changed, removed)
        changes["new_texts"], changes["removed_texts"] = int(tnew.sum()), int((~np.isin(told, tkeys)).sum())
        if not write:
            plan = StoredPlan(work, header)
            plan.pending = changes
            return plan
        first = not exists
        if is_new.any():
            cut = ShardCutter(profile.shard_size, header["n_shards"])
            w = ChunkWriter(work / "sources", SOURCE_SCHEMA, header["n_shards"], header["chunk_shards"])
            mask_iter = iter(is_new)
            for batch in pq.ParquetFile(staged).iter_batches(batch_size=BATCH):
                for r in batch.to_pylist():
                    if next(mask_iter):
                        r["shard"] = cut(r)
                        w.add(r)
            w.flush()
            header["n_shards"] = cut.k + 1
        if tnew.any():
            w = ChunkWriter(work / "texts", TEXT_SCHEMA, header["n_tts_shards"], header["text_chunk_shards"])
            k0, s = header["n_tts_shards"], header["tts_shard_size"]
            idx = np.flatnonzero(tnew)
            for j, i in enumerate(idx):
                w.add({"shard": k0 + j // s, "record_json": json.dumps(texts[i], ensure_ascii=False), "key": int(tkeys[i])})
            w.flush()
            header["n_tts_shards"] = k0 + -(-len(idx) // s)
        header["n_sources"] = header.get("n_sources", 0) + int(is_new.sum())
        header["n_texts"] = header.get("n_texts", 0) + int(tnew.sum())
        if is_new.any() or tnew.any() or first:
            header["generations"] = header.get("generations", []) + [
                {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "sources": int(is_new.sum()), "texts": int(tnew.sum()),
                 "n_shards": header["n_shards"], "n_tts_shards": header["n_tts_shards"]}]
        header["changes"] = {k: v for k, v in changes.items() if k not in ("new", "new_texts")}
        if not first and (changes["changed"] or changes["removed"] or changes["removed_texts"]):
            warnings.warn(describe_changes(changes))
        if first:
            if not _write_header(work, header, exclusive=True):
                return StoredPlan(work, read_header(work))
        else:
            _write_header(work, header)
        plan = StoredPlan(work, header)
        plan.pending = changes
        return plan
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)


def describe_changes(c: dict) -> str:
    parts = []
    if c.get("new") or c.get("new_texts"):
        parts.append(f"{c.get('new', 0)} new source(s) and {c.get('new_texts', 0)} new text record(s) become new shards")
    if c.get("changed"):
        parts.append(f"{c['changed']} file(s) changed since they were planned (kept with their earlier output; "
                     f"--overwrite redoes them): {', '.join(c.get('changed_files', [])[:5])}")
    if c.get("removed"):
        parts.append(f"{c['removed']} planned file(s) are gone from the input (their earlier output is kept): "
                     f"{', '.join(c.get('removed_files', [])[:5])}")
    if c.get("removed_texts"):
        parts.append(f"{c['removed_texts']} planned text record(s) are gone from the text corpus")
    return "; ".join(parts) or "inputs unchanged"


def _new_header(profile, text_rejects: list[dict]) -> dict:
    return {"format": FORMAT, "language": profile.language, "profile_digest": profile.digest(),
            "input": str(profile.path(profile.input)) if profile.input else "None", "shard_size": profile.shard_size,
            "tts_shard_size": 16, "chunk_shards": max(1, CHUNK_ROWS // profile.shard_size),
            "text_chunk_shards": max(1, CHUNK_ROWS // 16), "n_shards": 0, "n_tts_shards": 0, "n_sources": 0, "n_texts": 0,
            "text_rejects": text_rejects, "generations": []}


def _convert(profile, work: Path, old: dict, write: bool, legacy) -> dict | None:
    """A format-1 plan.json (sources inline) as chunk tables + a format-2 header, shard numbers unchanged."""
    if not write:
        return None
    plan = legacy(**old)
    header = _new_header(profile, plan.text_rejects)
    header["tts_shard_size"] = plan.tts_shard_size
    header["text_chunk_shards"] = max(1, CHUNK_ROWS // plan.tts_shard_size)
    w = ChunkWriter(work / "sources", SOURCE_SCHEMA, 0, header["chunk_shards"])
    for k in range(plan.n_shards):
        for d in plan.sources[plan.shard_slice(k)]:
            s = Source(**d)
            w.add(_source_row({**d, "key": h64(f"{s.rel}\0{s.span}"), "fp": _fingerprint(s)}, k))
    w.flush()
    w = ChunkWriter(work / "texts", TEXT_SCHEMA, 0, header["text_chunk_shards"])
    for i, r in enumerate(plan.texts):
        w.add({"shard": i // plan.tts_shard_size, "record_json": json.dumps(r, ensure_ascii=False),
               "key": h64(json.dumps(r, sort_keys=True, default=str))})
    w.flush()
    header.update(n_shards=plan.n_shards, n_tts_shards=plan.n_tts_shards, n_sources=len(plan.sources), n_texts=len(plan.texts))
    _write_header(work, header)
    return header


def iter_source_batches(plan) -> Iterable[list[dict]]:
    """Every planned source record, chunk by chunk (either plan format)."""
    if isinstance(plan, StoredPlan):
        for t in iter_rows(plan.work / "sources"):
            yield [_source_dict(r) for r in t.to_pylist()]
    else:
        yield plan.sources
