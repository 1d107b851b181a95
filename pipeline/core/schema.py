"""Arrow schemas for the output tables, loaded from schemas/*.yaml (field docs kept as metadata).

The Hugging Face ``datasets`` features are written into the schema metadata (key
``huggingface``), so ``load_dataset("parquet", ...)`` gives a typed ``Audio`` column and a list of
chat messages without any extra argument.
"""
from __future__ import annotations

import json
from functools import lru_cache

import pyarrow as pa
import yaml

from pipeline import ROOT
from pipeline.core.audio import SAMPLE_RATE  # noqa: F401 (API)

SCHEMA_DIR = ROOT / "schemas"
TABLES = ("utterances", "instructions", "rejects")

AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "audio": AUDIO_TYPE,
    "messages": MESSAGES_TYPE,
}


def _hf_feature(kind: str):
    from datasets import Audio, Value

    if kind == "audio":
        return Audio(sampling_rate=SAMPLE_RATE)
    if kind == "messages":
        from datasets import List

        return List({"role": Value("string"), "content": Value("string")})
    return Value({"float32": "float32", "float64": "float64", "bool": "bool"}.get(kind, kind))


@lru_cache(maxsize=None)
def spec(table: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / f"{table}.yaml").read_text())


@lru_cache(maxsize=None)
def schema(table: str) -> pa.Schema:
    from datasets import Features

    fields = spec(table)["fields"]
    features = Features({f["name"]: _hf_feature(f["type"]) for f in fields})
    hf_meta = features.arrow_schema.metadata or {}
    # Arrow fields stay nullable (datasets only restores its features for fields equal to its own,
    # which are nullable); "required" is recorded in the field metadata and enforced by to_table().
    return pa.schema(
        [pa.field(f["name"], _TYPES[f["type"]], metadata={"doc": f["doc"], "kind": f["type"],
                                                           "required": str(not f.get("nullable", True)).lower()})
         for f in fields],
        metadata={**hf_meta, b"speechinstruct.table": table.encode()},
    )


def columns(table: str) -> list[str]:
    return [f["name"] for f in spec(table)["fields"]]


def to_table(table: str, rows: list[dict]) -> pa.Table:
    """Build a table of the given schema from row dicts (missing keys become null)."""
    sch = schema(table)
    cols = {name: [r.get(name) for r in rows] for name in sch.names}
    for f in spec(table)["fields"]:
        if not f.get("nullable", True) and any(v is None for v in cols[f["name"]]):
            i = cols[f["name"]].index(None)
            raise ValueError(f"{table}.{f['name']} is required but row {rows[i].get('id')!r} has no value")
    return pa.Table.from_pydict(cols, schema=sch)


def conform(table: str, t: pa.Table) -> pa.Table:
    """Select/cast a table's columns to the declared schema, adding missing nullable columns."""
    sch = schema(table)
    arrays = []
    for f in sch:
        if f.name in t.column_names:
            arrays.append(t.column(f.name).cast(f.type))
        else:
            arrays.append(pa.nulls(len(t), f.type))
    return pa.Table.from_arrays(arrays, schema=sch)


def describe(table: str) -> str:
    return "\n".join(f"- `{f['name']}` ({f['type']}): {f['doc']}" for f in spec(table)["fields"])
