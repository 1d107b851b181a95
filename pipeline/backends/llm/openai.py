"""``openai``: any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``, llama.cpp's
``llama-server``, ``python -m llama_cpp.server``), ``concurrency`` requests in flight at once. Standard
library only. The embedded ``llama-cpp`` engine (``llama_server.py``) is this client on a private
llama-server, so the CPU default and production serving share one request path."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.backends.llm.base import ChatRequest, Completion, Usage
from pipeline.core.config import LLMConfig


class OpenAIEngine:
    """Any OpenAI-compatible /v1/chat/completions server; ``concurrency`` requests in flight.

    Structured output: ``response_format={"type": "json_schema", ...}`` is the OpenAI form that
    ``vllm serve`` enforces; ``python -m llama_cpp.server`` only knows
    ``{"type": "json_object", "schema": ...}``. ``auto`` sends the first and switches to the second
    for the rest of the run when the server refuses it (4xx, or an error naming response_format).
    """

    name = "openai"
    thread_safe = True  # complete() may be called from several threads (each call has its own pool)

    def __init__(self, base_url: str | None, model: str, *, concurrency: int, timeout: float, response_format: str):
        if not base_url:
            raise ValueError("llm.base_url is required for the openai engine (e.g. http://127.0.0.1:8000/v1)")
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.format = "json_schema" if response_format == "auto" else response_format
        self._auto = response_format == "auto"
        self.usage = Usage()

    @classmethod
    def from_config(cls, cfg: LLMConfig, concurrency: int | None = None, **context: Any) -> "OpenAIEngine":
        return cls(cfg.base_url, cfg.model, concurrency=concurrency or cfg.concurrency, timeout=cfg.request_timeout_s,
                   response_format=cfg.response_format)

    def _body(self, r: ChatRequest) -> dict:
        body = {"model": self.model_id, "messages": r.messages, "max_tokens": r.max_tokens,
                "temperature": r.temperature, "top_p": r.top_p, "seed": r.seed}
        if r.json_schema is not None:
            if self.format == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": r.json_schema}}
            else:
                body["response_format"] = {"type": "json_object", "schema": r.json_schema}
        if r.top_logprobs:
            body["logprobs"], body["top_logprobs"] = True, int(r.top_logprobs)
        return body

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def _one(self, r: ChatRequest) -> Completion:
        for attempt in range(4):
            body = self._body(r)
            try:
                res = self._post(body)
                break
            except urllib.error.HTTPError as e:
                msg = e.read().decode(errors="replace")[:500]
                # llama_cpp.server answers 500 with a validation error naming response_format; others 400/422
                if (self._auto and self.format == "json_schema" and "response_format" in body
                        and (400 <= e.code < 500 or "response_format" in msg)):
                    self.format = "json_object"  # server does not take OpenAI json_schema (llama_cpp.server)
                    continue
                if e.code >= 500 and attempt < 3:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise RuntimeError(f"{self.base_url}: HTTP {e.code}: {msg}") from e
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if attempt == 3:
                    raise
                time.sleep(0.5 * 2 ** attempt)
        u = res.get("usage") or {}
        choice = res["choices"][0]
        c = Completion(text=choice["message"]["content"] or "", finish_reason=choice.get("finish_reason"),
                       prompt_tokens=int(u.get("prompt_tokens") or 0), completion_tokens=int(u.get("completion_tokens") or 0),
                       cached_tokens=int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
                       top_logprobs=chat_top_logprobs(choice.get("logprobs")))
        self.usage.add(c.prompt_tokens, c.completion_tokens, c.cached_tokens, truncated=c.finish_reason == "length")
        return c

    def complete(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answers in request order; sent ``concurrency`` at a time, those sharing a conversation prefix (system
        prompt, few-shot turns) one after another so that the server's prefix cache serves them."""
        if not requests:
            return []
        order = sorted(range(len(requests)), key=lambda i: _prefix_key(requests[i]))
        out: list[Completion | None] = [None] * len(requests)
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(requests)))) as pool:
            for i, c in zip(order, pool.map(self._one, [requests[i] for i in order])):
                out[i] = c
        return out  # type: ignore[return-value]

    def chat(self, requests: list[ChatRequest]) -> list[str]:
        return [c.text for c in self.complete(requests)]


def chat_top_logprobs(lp: dict | None) -> list[dict[str, float]] | None:
    """OpenAI chat ``choice.logprobs`` -> per generated token {token: logprob} of its top alternatives."""
    if not lp or not lp.get("content"):
        return None
    return [{t["token"]: float(t["logprob"]) for t in (pos.get("top_logprobs") or [pos])} for pos in lp["content"]]


def _prefix_key(r: ChatRequest) -> str:
    """Everything but the last turn: requests with the same key share a prompt prefix."""
    return json.dumps(r.messages[:-1], sort_keys=True)
