"""Registries: one per backend family (asr, llm, tts, metadata estimators, vad) and one for stages.

An entry maps a name (what a profile writes, e.g. ``asr.backend: faster-whisper``) to a class given as
``"module:Class"``, imported only when the entry is used, plus the Python packages it needs. A missing
package is a clear error naming the pip package, raised when the backend is asked for, not at import:

    ASR = Registry("asr")
    ASR.add("faster-whisper", "pipeline.backends.asr.faster_whisper:FasterWhisperBackend",
            requires={"faster_whisper": "faster-whisper"})
    backend = ASR.create("faster-whisper", cfg)

Adding a backend is one file plus one ``add`` line in its family's ``__init__.py``.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownBackend(ValueError):
    pass


class MissingPackage(ImportError):
    pass


@dataclass(frozen=True)
class Entry:
    family: str
    name: str
    target: str  # "module:Class"
    requires: dict[str, str] = field(default_factory=dict)  # importable module -> pip requirement
    doc: str = ""

    def missing(self) -> list[str]:
        """pip requirements of this entry whose module cannot be found here."""
        out = []
        for mod, pip in self.requires.items():
            try:
                found = importlib.util.find_spec(mod) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(pip)
        return out

    def load(self) -> type:
        miss = self.missing()
        if miss:
            raise MissingPackage(
                f"{self.family} backend {self.name!r} needs {', '.join(miss)}: pip install {' '.join(repr(m) for m in miss)}")
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """name -> lazily imported class, for one family."""

    def __init__(self, family: str, protocol: type | None = None):
        self.family = family
        self.protocol = protocol  # a typing.Protocol every entry's class satisfies (checked by the contract tests)
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, target: str, requires: dict[str, str] | None = None, doc: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.family} backend {name!r} registered twice")
        self._entries[name] = Entry(self.family, name, target, dict(requires or {}), doc)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownBackend(f"unknown {self.family} backend {name!r}; known: {', '.join(self._entries)}") from None

    def get(self, name: str) -> type:
        return self.entry(name).load()

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())
