"""Run state: the plan of one output folder and its shard files (what the runner and the flows share).

Layout of one run (``<output_dir>/<lang>/``)::

    _work/plan.json                 header: profile digest, shard counts, generations (pipeline.run.sources)
    _work/sources/, _work/texts/    the planned sources / text records, chunked by shard (read per shard)
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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipeline.core import schema

from pipeline.core import store
from pipeline.run import claims
from pipeline.run import sources as sources_table
from pipeline.core.config import Profile
from pipeline.stages import SOURCES, STAGES, TEXTS
from pipeline.recipes.audio import Source, discover, split_long



def stage_class(name: str):
    """The registered Stage class (its ``reads`` / ``writes`` drive the bookkeeping below)."""
    return STAGES.get(name)


def previous(stage: str) -> str | None:
    """The stage whose shard files ``stage`` reads (None when it reads the plan's sources or texts)."""
    reads = stage_class(stage).reads
    return None if reads in (SOURCES, TEXTS) else reads


def shard_starts(sources: list[dict], shard_size: int) -> list[int]:
    """Shards of up to ``shard_size`` files; a span of a long file (recipes.audio.split_long) is a shard of
    its own, so a shard never holds more than about one span of audio however long the files are."""
    starts, n = [], 0
    for i, s in enumerate(sources):
        if s.get("span") is not None or n == 0 or n >= shard_size:
            starts.append(i)
            n = 0
        n = 1 if s.get("span") is not None else n + 1
        if s.get("span") is not None:
            n = shard_size  # nothing joins a span's shard
    return starts


PlanMismatch = sources_table.PlanMismatch  # the folder holds a run of another profile or input


class RunBusy(RuntimeError):
    """Another live process works on this output folder (and the request would destroy its work)."""


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
    shards: list[int] | None = None  # start index (into sources) of each shard; None: every shard_size

    def __post_init__(self):
        if self.shards is None:
            self.shards = shard_starts(self.sources, self.shard_size)

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    def shard_slice(self, k: int) -> slice:
        return slice(self.shards[k], self.shards[k + 1] if k + 1 < len(self.shards) else len(self.sources))

    @property
    def files(self) -> list[str]:
        """Input files (a long file planned as spans appears once)."""
        return list(dict.fromkeys(s["rel"] for s in self.sources))

    @property
    def n_tts_shards(self) -> int:
        return -(-len(self.texts) // self.tts_shard_size)

    def shard_sources(self, k: int) -> list[dict]:
        return self.sources[self.shard_slice(k)]

    def shard_texts(self, k: int) -> list[dict]:
        s = self.tts_shard_size
        return self.texts[k * s:(k + 1) * s]


def build_plan(p: Profile) -> Plan:
    """The plan of a run of profile ``p``: discovers the inputs, writes nothing (``python -m pipeline plan``
    shows it before a run; ``Run`` writes it as ``_work/plan.json``)."""
    input_path = p.path(p.input)
    sources = [s.dump() for s in split_long(discover(input_path), p.ingest.long_file_span_s)] if input_path else []
    texts, text_rejects = [], []
    if p.tts.input:
        from pipeline.recipes.text import read_corpus

        recs, rej = read_corpus(p.path(p.tts.input))
        texts = [r.model_dump() for r in recs]
        text_rejects = [{"id": i, "reason": reason, "detail": detail} for i, reason, detail in rej]
    return Plan(p.language, p.digest(), str(input_path), sources, p.shard_size, texts, text_rejects)


class Run:
    """One run's folder and plan. ``attach=True`` (shard workers) only reads the existing plan: no
    discovery, no clean-up of temp files that another worker may be writing."""

    def __init__(self, profile: Profile, output_dir: str | Path | None = None, overwrite: bool = False,
                 attach: bool = False):
        self.profile = profile
        self.dir = Path(output_dir or profile.path(profile.output_dir)) / profile.language
        self.work = self.dir / "_work"
        self.attached = attach
        if attach:  # the plan's header only; a shard's sources are read from one chunk (pipeline.run.sources)
            self.plan = sources_table.load(self.work, Plan)
            self.timings = {}
            return
        if overwrite and self.dir.exists():
            busy = claims.live_claims(self.work / "claims", self.claim_ttl_s)
            if busy:
                raise RunBusy(f"{self.dir} is being worked on by {claims.describe(busy[0][1])} "
                              f"({busy[0][0].stem}); --overwrite would delete its work: stop it first")
            shutil.rmtree(self.dir)
        self.work.mkdir(parents=True, exist_ok=True)
        store.clean_temps(self.dir)  # temps of dead writers only (a live worker's temp is kept)
        self.plan = self._plan()
        self.timings: dict[str, float] = self._load_timings()

    # ---- plan -----------------------------------------------------------------------------
    def _plan(self):
        """Discover the inputs and write or extend the stored plan (pipeline.run.sources: new files become new
        shards, changed and removed ones are reported). Attached (``Run(..., attach=True)._plan()``) it only
        compares and writes nothing: PlanMismatch for a run of another profile, else the plan with ``pending``."""
        if self.attached:
            return sources_table.plan_run(self.profile, self.work, Plan, write=False)
        while (c := self.claim("plan")) is None:  # one planner at a time (two would both add the new files)
            time.sleep(0.25)
        try:
            return sources_table.plan_run(self.profile, self.work, Plan, write=True)
        finally:
            c.release()

    def sources(self, k: int) -> list[Source]:
        return [Source(**d) for d in self.plan.shard_sources(k)]

    def texts(self, k: int) -> list[dict]:
        return self.plan.shard_texts(k)

    # ---- shard bookkeeping --------------------------------------------------------------------
    def part(self, stage: str, k: int) -> Path:
        return self.work / stage / store.part_name(k)

    def rejects_part(self, stage: str, k: int) -> Path:
        return self.work / stage / store.part_name(k, "rejects")

    def shard_ids(self, stage: str) -> list[int]:
        return list(range(self.plan.n_tts_shards if stage_class(stage).reads == TEXTS else self.plan.n_shards))

    def done(self, stage: str, k: int) -> bool:
        """Shard ``k`` of ``stage`` is finished: its part file exists and is a whole Parquet file. A
        truncated or unreadable part (left by a crash, a full disk or a bad copy) is moved aside
        (``*.corrupt-*``, reason in ``*.why``) so that the shard is redone."""
        p = self.part(stage, k)
        if not p.exists():
            return False
        bad = store.check(p)
        if bad is None:
            return True
        moved = store.quarantine(p, f"{stage} shard {k}: {bad}")
        warnings.warn(f"{stage} shard {k}: part file was not whole ({bad}); moved to {moved.name}, shard will be redone")
        return False

    def pending(self, stage: str) -> list[int]:
        return [k for k in self.shard_ids(stage) if not self.done(stage, k)]

    # ---- cooperative claims (pipeline.run.claims; several processes or machines, one run) ------------
    @property
    def claim_ttl_s(self) -> float:
        return float(getattr(self.profile.orchestration, "claim_ttl_s", claims.DEFAULT_TTL_S))

    def claim_path(self, stage: str, k: int | None = None) -> Path:
        return self.work / "claims" / (f"{stage}-{k:05d}.claim" if k is not None else f"{stage}.claim")

    def claim(self, stage: str, k: int | None = None) -> "claims.Claim | None":
        """Claim shard ``k`` of ``stage`` (or a whole step such as ``export`` when ``k`` is None) for this
        process; None when a live process holds it."""
        return claims.try_claim(self.claim_path(stage, k), self.claim_ttl_s, what=f"{self.dir}:{stage}:{k}")

    def holder(self, stage: str, k: int | None = None) -> dict | None:
        return claims.holder(self.claim_path(stage, k), self.claim_ttl_s)

    def write_shard(self, stage: str, k: int, rows: list[dict] | pa.Table, rejects: list[dict]) -> int | None:
        """Write shard ``k``: rejects first, then the part (the "done" mark) with a link that never
        overwrites. Returns the row count, or None when another process finished the shard first (then
        nothing of this call is kept and nothing is logged)."""
        table_name = stage_class(stage).writes
        t = rows if isinstance(rows, pa.Table) else schema.to_table(table_name, rows)
        if self.done(stage, k):
            return None
        store.write_atomic(schema.to_table("rejects", rejects), self.rejects_part(stage, k))
        if not store.write_atomic(schema.conform(table_name, t), self.part(stage, k), overwrite=False):
            return None
        with open(self.work / stage / "writes.log", "a") as log:  # one O_APPEND line per finished shard
            log.write(f"{k}\t{os.getpid()}\t{time.time():.3f}\t{t.num_rows}\t{claims.HOST}\n")
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
        """Add wall seconds of ``stage`` (merged with what other processes of the run recorded)."""
        self.timings = {**self._load_timings(), **{k: v for k, v in self.timings.items() if k not in self._load_timings()}}
        self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 2)
        path = self.work / "timings.json"
        tmp = store.temp_path(path)
        tmp.write_text(json.dumps(self.timings, indent=1))
        tmp.replace(path)
