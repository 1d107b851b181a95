"""The one Stage protocol every stage implements, and how stages are found.

A stage turns the rows of one shard into output rows and rejects::

    class AsrStage:
        name = "asr"            # the name a profile, the runner and the flows use
        reads = "metadata"      # "sources" (input files), "texts" (text corpus records) or a stage's name
        writes = "utterances"   # output table: "utterances" or "instructions"

        @classmethod
        def from_profile(cls, profile): ...   # load the models once (the runner keeps one per worker process)

        def process(self, rows): ...          # -> (rows, rejects); never raises for one bad row

        def close(self): ...                  # optional: stop what it holds (a server); called at the end of a run

        thread_safe = False                   # optional: True when process() may run for several shards at once
        @classmethod
        def in_flight(cls, profile): ...      # optional: how many shards the runner keeps in work at once (default 1;
                                              #   the llm stage: llm.shards_in_flight, their requests share decode steps)

The runner and the flows look stages up in ``pipeline.stages.STAGES``; there is no if-chain on a stage name.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pipeline.core.config import Profile


def in_flight(stage_cls, profile: Profile) -> int:
    """Shards of this stage a process keeps in work at once (the stage's optional ``in_flight``, else 1)."""
    f = getattr(stage_cls, "in_flight", None)
    return max(1, int(f(profile))) if f is not None else 1


SOURCES = "sources"  # reads the planned input files (pipeline.recipes.audio.Source)
TEXTS = "texts"  # reads the planned text instruction records (pipeline.recipes.text.TextInstruction dicts)


@runtime_checkable
class Stage(Protocol):
    name: ClassVar[str]
    reads: ClassVar[str]
    writes: ClassVar[str]

    @classmethod
    def from_profile(cls, profile: Profile) -> "Stage": ...

    def process(self, rows: list[Any]) -> tuple[list[dict], list[dict]]: ...
