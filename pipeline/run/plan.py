"""Run state: the plan of one output folder and its shard files (what the runner and the flows share).

Layout of one run (``<output_dir>/<lang>/``)::

    _work/plan.json                 sources, shard count, profile digest (fixed at first run)
    _work/<stage>/part-NNNNN.parquet   stage output for shard N (exists => shard done)
    _work/<stage>/rejects-NNNNN.parquet
    utterances/ instructions/ rejects/  final tables (written by ``export``)

Every shard write is atomic and a shard whose part file exists is skipped, so a killed run resumes
where it stopped and never writes a row twice.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipeline.core import schema

from pipeline.core import store
from pipeline.core.config import Profile
from pipeline.stages import SOURCES, STAGES, TEXTS
from pipeline.recipes.audio import Source, discover



def stage_class(name: str):
    """The registered Stage class (its ``reads`` / ``writes`` drive the bookkeeping below)."""
    return STAGES.get(name)


def previous(stage: str) -> str | None:
    """The stage whose shard files ``stage`` reads (None when it reads the plan's sources or texts)."""
    reads = stage_class(stage).reads
    return None if reads in (SOURCES, TEXTS) else reads


class PlanMismatch(RuntimeError):
    pass


@dataclass
class Plan:
    language: str
    profile_digest: str
    input: str
    sources: list[dict]
    shard_size: int
    texts: list[dict] = field(default_factory=list)
    text_rejects: list[dict] = field(default_factory=list)
    tts_shard_size: int = 16

    @property
    def n_shards(self) -> int:
        return -(-len(self.sources) // self.shard_size)

    @property
    def n_tts_shards(self) -> int:
        return -(-len(self.texts) // self.tts_shard_size)


class Run:
    """One run's folder and plan. ``attach=True`` (shard workers) only reads the existing plan: no
    discovery, no clean-up of temp files that another worker may be writing."""

    def __init__(self, profile: Profile, output_dir: str | Path | None = None, overwrite: bool = False,
                 attach: bool = False):
        self.profile = profile
        self.dir = Path(output_dir or profile.path(profile.output_dir)) / profile.language
        self.work = self.dir / "_work"
        if attach:
            self.plan = Plan(**json.loads((self.work / "plan.json").read_text()))
            self.timings = {}
            return
        if overwrite and self.dir.exists():
            shutil.rmtree(self.dir)
        self.work.mkdir(parents=True, exist_ok=True)
        store.clean_temps(self.dir)
        self.plan = self._plan()
        self.timings: dict[str, float] = self._load_timings()

    # ---- plan -----------------------------------------------------------------------------
    def _plan(self) -> Plan:
        p = self.profile
        path = self.work / "plan.json"
        input_path = p.path(p.input)
        sources = [s.model_dump() for s in discover(input_path)] if input_path else []
        texts, text_rejects = [], []
        if p.tts.input:
            from pipeline.recipes.text import read_corpus

            recs, rej = read_corpus(p.path(p.tts.input))
            texts = [r.model_dump() for r in recs]
            text_rejects = [{"id": i, "reason": reason, "detail": detail} for i, reason, detail in rej]
        plan = Plan(p.language, p.digest(), str(input_path), sources, p.shard_size, texts, text_rejects)
        if path.exists():
            old = Plan(**json.loads(path.read_text()))
            if (old.profile_digest, old.sources, old.texts) != (plan.profile_digest, plan.sources, plan.texts):
                raise PlanMismatch(
                    f"{self.dir} holds a run with a different profile or input (digest {old.profile_digest} vs "
                    f"{plan.profile_digest}, {len(old.sources)} vs {len(plan.sources)} sources); "
                    "pass --overwrite to start again or choose another --output-dir")
            return old
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan.__dict__, indent=1, ensure_ascii=False))
        tmp.replace(path)
        return plan

    def sources(self, k: int) -> list[Source]:
        s = self.plan.shard_size
        return [Source(**d) for d in self.plan.sources[k * s:(k + 1) * s]]

    def texts(self, k: int) -> list[dict]:
        s = self.plan.tts_shard_size
        return self.plan.texts[k * s:(k + 1) * s]

    # ---- shard bookkeeping --------------------------------------------------------------------
    def part(self, stage: str, k: int) -> Path:
        return self.work / stage / store.part_name(k)

    def rejects_part(self, stage: str, k: int) -> Path:
        return self.work / stage / store.part_name(k, "rejects")

    def shard_ids(self, stage: str) -> list[int]:
        return list(range(self.plan.n_tts_shards if stage_class(stage).reads == TEXTS else self.plan.n_shards))

    def pending(self, stage: str) -> list[int]:
        return [k for k in self.shard_ids(stage) if not self.part(stage, k).exists()]

    def write_shard(self, stage: str, k: int, rows: list[dict] | pa.Table, rejects: list[dict]) -> int:
        table_name = stage_class(stage).writes
        t = rows if isinstance(rows, pa.Table) else schema.to_table(table_name, rows)
        store.write_atomic(schema.to_table("rejects", rejects), self.rejects_part(stage, k))
        store.write_atomic(schema.conform(table_name, t), self.part(stage, k))  # last: marks the shard done
        with open(self.work / stage / "writes.log", "a") as log:  # one O_APPEND line per finished shard
            log.write(f"{k}\t{os.getpid()}\t{time.time():.3f}\t{t.num_rows}\n")
        return t.num_rows

    def inputs(self, stage: str, k: int) -> list:
        """What shard ``k`` of ``stage`` reads: planned sources, planned texts, or the previous stage's rows."""
        reads = stage_class(stage).reads
        if reads == SOURCES:
            return self.sources(k)
        if reads == TEXTS:
            return self.texts(k)
        return store.read(self.part(reads, k)).to_pylist()

    def input_rows(self, stage: str, k: int) -> list[dict]:
        return store.read(self.part(previous(stage), k)).to_pylist()

    def _load_timings(self) -> dict:
        p = self.work / "timings.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def add_timing(self, stage: str, seconds: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 2)
        (self.work / "timings.json").write_text(json.dumps(self.timings, indent=1))
