"""LLM engines behind one tiny protocol: batched chat requests in, raw texts out.

- ``llama-cpp``: llama.cpp on a GGUF (the embedded CPU default: Qwen2.5-0.5B-Instruct Q4_K_M);
  JSON requests are constrained by a grammar built from the JSON schema. In-process llama.cpp
  serves one sequence at a time, so a "batch" is run sequentially (the KV-cache prefix of the
  previous request is reused, which is why requests of one kind are sent together).
- ``vllm``: vLLM offline batched generation on GPU: one ``LLM.chat`` call with a list of
  conversations and a list of ``SamplingParams`` (paired one by one), JSON schemas enforced with
  ``StructuredOutputsParams`` (vLLM >= 0.10.2; ``GuidedDecodingParams`` on older releases, where
  it was the only form; it was removed in later ones).
- ``openai``: any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``,
  ``python -m llama_cpp.server``), ``concurrency`` requests in flight at once.

Every engine counts requests and prompt/completion tokens in ``engine.usage`` (for benchmarks).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from .config import LLMConfig
from .models import resolve


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

    def chat(self, requests: list[ChatRequest]) -> list[str]: ...


class LlamaCppEngine:
    name = "llama-cpp"

    def __init__(self, cfg: LLMConfig):
        from llama_cpp import Llama

        self.model_id = cfg.model
        self.usage = Usage()
        self.llm = Llama(model_path=resolve(cfg.model), n_ctx=cfg.n_ctx, n_threads=cfg.n_threads,
                         seed=cfg.seed, verbose=False)

    def chat(self, requests):
        out = []
        for r in requests:  # llama.cpp in-process serves one sequence at a time
            kw = {}
            if r.json_schema is not None:
                kw["response_format"] = {"type": "json_object", "schema": r.json_schema}
            res = self.llm.create_chat_completion(
                messages=r.messages, max_tokens=r.max_tokens, temperature=r.temperature,
                top_p=r.top_p, seed=r.seed, **kw,
            )
            u = res.get("usage") or {}
            self.usage.add(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
            out.append(res["choices"][0]["message"]["content"] or "")
        return out


def vllm_sampling_params(r: ChatRequest):
    """``SamplingParams`` for one request, JSON schema enforced by structured outputs."""
    from vllm import SamplingParams

    kw = dict(temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=r.seed)
    if r.json_schema is not None:
        try:  # vLLM >= 0.10.2: SamplingParams(structured_outputs=StructuredOutputsParams(json=...))
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(json=r.json_schema)
        except ImportError:  # older vLLM: SamplingParams(guided_decoding=GuidedDecodingParams(json=...))
            from vllm.sampling_params import GuidedDecodingParams

            kw["guided_decoding"] = GuidedDecodingParams(json=r.json_schema)
    return SamplingParams(**kw)


class VLLMEngine:
    """GPU engine (``pip install .[gpu]``). One ``LLM.chat`` call per batch of requests."""

    name = "vllm"

    def __init__(self, cfg: LLMConfig):
        from vllm import LLM

        self.model_id = cfg.model
        self.usage = Usage()
        self.llm = LLM(model=resolve(cfg.model), tensor_parallel_size=cfg.tensor_parallel_size,
                       gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed,
                       max_model_len=cfg.n_ctx)

    _params = staticmethod(vllm_sampling_params)

    def chat(self, requests):
        if not requests:
            return []
        # LLM.chat(messages=list of conversations, sampling_params=list paired one by one with them)
        outs = self.llm.chat([r.messages for r in requests], sampling_params=[self._params(r) for r in requests],
                             use_tqdm=False)
        texts = []
        for o in outs:
            c = o.outputs[0]
            self.usage.add(len(o.prompt_token_ids or []), len(c.token_ids or []))
            texts.append(c.text)
        return texts


class OpenAIEngine:
    """Any OpenAI-compatible /v1/chat/completions server; ``concurrency`` requests in flight.

    Structured output: ``response_format={"type": "json_schema", ...}`` is the OpenAI form that
    ``vllm serve`` enforces; ``python -m llama_cpp.server`` only knows
    ``{"type": "json_object", "schema": ...}``. ``auto`` sends the first and switches to the second
    for the rest of the run when the server refuses it (4xx, or an error naming response_format).
    """

    name = "openai"

    def __init__(self, cfg: LLMConfig, concurrency: int | None = None):
        if not cfg.base_url:
            raise ValueError("llm.base_url is required for the openai engine (e.g. http://127.0.0.1:8000/v1)")
        self.base_url = cfg.base_url.rstrip("/")
        self.model_id = cfg.model
        self.concurrency = concurrency or cfg.concurrency
        self.timeout = cfg.request_timeout_s
        self.format = "json_schema" if cfg.response_format == "auto" else cfg.response_format
        self._auto = cfg.response_format == "auto"
        self.usage = Usage()

    def _body(self, r: ChatRequest) -> dict:
        body = {"model": self.model_id, "messages": r.messages, "max_tokens": r.max_tokens,
                "temperature": r.temperature, "top_p": r.top_p, "seed": r.seed}
        if r.json_schema is not None:
            if self.format == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": r.json_schema}}
            else:
                body["response_format"] = {"type": "json_object", "schema": r.json_schema}
        return body

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(), headers=headers)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            return json.loads(resp.read())

    def _one(self, r: ChatRequest) -> str:
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
        self.usage.add(u.get("prompt_tokens", 0), u.get("completion_tokens", 0))
        return res["choices"][0]["message"]["content"] or ""

    def chat(self, requests):
        if not requests:
            return []
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(requests)))) as pool:
            return list(pool.map(self._one, requests))


@contextlib.contextmanager
def local_llama_server(model: str, n_threads: int = 2, n_ctx: int = 2048, port: int | None = None,
                       timeout: float = 600.0):
    """Run ``python -m llama_cpp.server`` (``pip install 'llama-cpp-python[server]'``) on 127.0.0.1
    with a GGUF (``embedded:<name>`` or a path) and yield its OpenAI base URL (``.../v1``); the
    server is stopped on exit. The model is served under the name ``model``. Its log goes to a
    temporary file (a pipe would fill up and block the server)."""
    import tempfile

    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", resolve(model), "--model_alias", model,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads)]
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"

        def tail() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-2000:]

        try:
            deadline = time.time() + timeout
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {p.returncode}: {tail()}")
                try:
                    with urllib.request.urlopen(f"{base}/models", timeout=2):
                        break
                except OSError:
                    if time.time() > deadline:
                        raise TimeoutError(f"llama_cpp.server did not answer on {base} within {timeout:.0f} s: {tail()}")
                    time.sleep(0.25)
            yield base
        finally:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def load_llm(cfg: LLMConfig) -> LLMEngine:
    engines = {"llama-cpp": LlamaCppEngine, "vllm": VLLMEngine, "openai": OpenAIEngine}
    if cfg.backend not in engines:
        raise ValueError(f"unknown LLM backend {cfg.backend!r}; known: {', '.join(engines)}")
    return engines[cfg.backend](cfg)
