"""What every LLM engine shares: the chat request, token accounting and the LLMEngine protocol.

An engine takes a batch of chat requests and returns the raw texts in request order; it counts
requests and prompt/completion tokens in ``engine.usage`` (for benchmarks).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.core.config import LLMConfig


@dataclass
class ChatRequest:
    messages: list[dict]
    max_tokens: int = 200
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    json_schema: dict | None = None


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.requests += 1
            self.prompt_tokens += int(prompt or 0)
            self.completion_tokens += int(completion or 0)

    def snapshot(self) -> dict:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class LLMEngine(Protocol):
    name: str
    model_id: str
    usage: Usage

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any) -> "LLMEngine": ...

    def chat(self, requests: list[ChatRequest]) -> list[str]: ...
