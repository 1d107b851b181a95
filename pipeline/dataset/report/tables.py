"""Reading a run directory for the report: Parquet part files opened lazily (``_Table``), only the wanted
columns or rows read, and the flattened ``_manifest.json``."""
from __future__ import annotations

import bisect
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.report.cells import _cut_chars

TABLES = ("utterances", "instructions", "rejects")
MANIFEST = "_manifest.json"
_TAKE_BATCH = 64  # rows decoded at a time when fetching sampled rows (bounds memory held by audio bytes)


@dataclass
class _Table:
    name: str
    files: list[Path] = field(default_factory=list)
    rows_per_file: list[int] = field(default_factory=list)
    names_per_file: list[list[str]] = field(default_factory=list)
    schema: pa.Schema | None = None
    bytes_on_disk: int = 0
    present: bool = False

    @property
    def rows(self) -> int:
        return sum(self.rows_per_file)

    def has(self, col: str) -> bool:
        return self.schema is not None and col in self.schema.names

    def scalar_columns(self) -> list[str]:
        if self.schema is None:
            return []
        return [f.name for f in self.schema if _is_scalar(f.type)]


def _is_scalar(t: pa.DataType) -> bool:
    return (pa.types.is_null(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t)
            or (pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type))))


def _open_table(dataset_dir: Path, name: str, warnings: list[str]) -> _Table:
    t = _Table(name)
    d = dataset_dir / name
    if not d.is_dir():
        return t
    t.present = True
    schemas = []
    for f in sorted(d.glob("*.parquet")):
        if f.name.startswith("."):  # writers' temp files
            continue
        try:
            meta = pq.read_metadata(f)
            sch = meta.schema.to_arrow_schema()
        except Exception as e:  # a truncated / foreign file must not kill the report
            warnings.append(f"{name}/{f.name}: unreadable Parquet file ({type(e).__name__}: {e})")
            continue
        t.files.append(f)
        t.rows_per_file.append(meta.num_rows)
        t.names_per_file.append(sch.names)
        t.bytes_on_disk += f.stat().st_size
        schemas.append(sch)
    if schemas:
        try:
            t.schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            warnings.append(f"{name}: part files have incompatible schemas ({e}); using the first one")
            t.schema = schemas[0]
    return t


def _read_columns(t: _Table, cols: list[str]) -> pa.Table:
    """Only ``cols`` (those present in the unified schema), concatenated over all part files."""
    cols = [c for c in cols if t.has(c)]
    fields = [t.schema.field(c) for c in cols]
    parts = []
    for f, n, names in zip(t.files, t.rows_per_file, t.names_per_file):
        got = pq.read_table(f, columns=[c for c in cols if c in names])
        arrays = []
        for fl in fields:
            if fl.name in got.column_names:
                col = got.column(fl.name)
                try:
                    col = col.cast(fl.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    col = pa.nulls(n, fl.type)
                arrays.append(col)
            else:
                arrays.append(pa.nulls(n, fl.type))
        parts.append(pa.Table.from_arrays(arrays, schema=pa.schema(fields)))
    if not parts:
        return pa.table({fl.name: pa.array([], fl.type) for fl in fields})
    return pa.concat_tables(parts)


def _take_rows(t: _Table, indices: list[int], cols: list[str]) -> list[dict]:
    """Rows at global ``indices`` (over the sorted part files), reading only the row groups they are in."""
    offsets = np.cumsum([0, *t.rows_per_file]).tolist()
    wanted: dict[int, list[int]] = defaultdict(list)
    for gi in indices:
        wanted[bisect.bisect_right(offsets, gi) - 1].append(gi)
    found: dict[int, dict] = {}
    for fi, gis in wanted.items():
        pf = pq.ParquetFile(t.files[fi])
        present = [c for c in cols if c in t.names_per_file[fi]]
        rg_off = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)]).tolist()
        by_rg: dict[int, list[int]] = defaultdict(list)
        for gi in sorted(set(gis)):
            by_rg[bisect.bisect_right(rg_off, gi - offsets[fi]) - 1].append(gi)
        for rg, rg_gis in by_rg.items():
            # Stream the row group in small batches: a row group can hold GBs of audio.
            pos, todo = 0, [(gi - offsets[fi] - rg_off[rg], gi) for gi in rg_gis]
            for batch in pf.iter_batches(batch_size=_TAKE_BATCH, row_groups=[rg], columns=present):
                here = [(local - pos, gi) for local, gi in todo if pos <= local < pos + batch.num_rows]
                if here:
                    rows = batch.take([i for i, _ in here]).to_pylist()
                    for (_, gi), row in zip(here, rows):
                        found[gi] = {c: row.get(c) for c in cols}
                pos += batch.num_rows
                if pos > todo[-1][0]:
                    break
    return [found[gi] for gi in indices if gi in found]


def _doc(t: _Table, col: str) -> str:
    try:
        md = t.schema.field(col).metadata or {}
    except KeyError:
        return ""
    return md.get(b"doc", b"").decode("utf-8", "replace")


def _flatten(obj, prefix: str = "") -> list[tuple[str, str, str | None]]:
    """Manifest -> (dotted key, short value, full value or None) rows; nested objects become dotted keys."""
    rows: list[tuple[str, str, str | None]] = []
    if isinstance(obj, dict) and obj:
        for key, val in obj.items():
            name = f"{prefix}{key}"
            if isinstance(val, dict) and val and prefix.count(".") < 3:
                rows.extend(_flatten(val, name + "."))
            else:
                rows.append((name, *_manifest_value(val)))
    else:
        rows.append((prefix.rstrip(".") or "manifest", *_manifest_value(obj)))
    return rows


def _manifest_value(v) -> tuple[str, str | None]:
    """(short, full): long values and lists of objects (e.g. file lists) are folded behind a summary."""
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        full = json.dumps(v, ensure_ascii=False, indent=1, default=str)
        return f"{len(v)} entr{'y' if len(v) == 1 else 'ies'}", _cut_chars(full, 20000)
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    if len(s) <= 200:
        return s, None
    return s[:160] + "…", _cut_chars(s, 20000)


def _read_manifest(dataset_dir: Path, warnings: list[str]) -> list[tuple[str, str, str | None]] | None:
    p = dataset_dir / MANIFEST
    if not p.is_file():
        return None
    try:
        return _flatten(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        warnings.append(f"{MANIFEST}: cannot be read ({e})")
        return None
