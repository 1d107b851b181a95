"""What every LLM engine shares: the chat request, token accounting and the LLMEngine protocol.

An engine takes a batch of chat requests and returns the raw texts in request order; it counts
requests and prompt/completion tokens in ``engine.usage`` (for benchmarks). Engines also have
``complete(requests) -> list[Completion]`` (text, finish_reason, token counts, top log-probs), of which
``chat`` is the texts; callers that need only texts keep using ``chat``. An engine with ``thread_safe = True``
takes calls from several threads at once (the llm stage then sends descriptions and QA together).
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
    top_logprobs: int = 0  # > 0: ask for the k most likely tokens at every generated position (Completion.top_logprobs)


@dataclass
class Completion:
    """One answer with what came with it (``engine.complete(requests)``; ``chat`` returns only the texts).
    ``top_logprobs``: per generated token, {token text: log-probability} of the k most likely tokens
    (when the request asked for them and the engine provides them, else None)."""

    text: str
    finish_reason: str | None = None  # "stop", "length" (cut by max_tokens), ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens served from the prefix cache
    top_logprobs: list[dict[str, float]] | None = None


@dataclass
class Usage:
    """Token accounting of one engine. ``cached_prompt_tokens``: prompt tokens the server took from its
    prefix cache instead of computing them (OpenAI ``usage.prompt_tokens_details.cached_tokens``, as
    llama-server and vllm serve report it); ``truncated``: answers cut by ``max_tokens``
    (``finish_reason == "length"``)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    truncated: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, prompt: int, completion: int, cached: int = 0, truncated: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.prompt_tokens += int(prompt or 0)
            self.completion_tokens += int(completion or 0)
            self.cached_prompt_tokens += int(cached or 0)
            self.truncated += bool(truncated)

    def snapshot(self) -> dict:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cached_prompt_tokens": self.cached_prompt_tokens, "truncated": self.truncated}


class LLMEngine(Protocol):
    name: str
    model_id: str
    usage: Usage

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any) -> "LLMEngine": ...

    def chat(self, requests: list[ChatRequest]) -> list[str]: ...
