"""LLM engines behind one tiny protocol: batched chat requests in, raw texts out.

- ``llama-cpp``: llama.cpp on a GGUF (the embedded CPU default: Qwen2.5-0.5B-Instruct Q4_K_M);
  JSON requests are constrained by a grammar built from the JSON schema.
- ``vllm``: vLLM offline batched generation on GPU, with structured (JSON-schema) decoding.
- ``openai``: any OpenAI-compatible server (``vllm serve``, llama.cpp server), requests in parallel.
"""
from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


class LLMEngine(Protocol):
    name: str
    model_id: str

    def chat(self, requests: list[ChatRequest]) -> list[str]: ...


class LlamaCppEngine:
    name = "llama-cpp"

    def __init__(self, cfg: LLMConfig):
        from llama_cpp import Llama

        self.model_id = cfg.model
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
            out.append(res["choices"][0]["message"]["content"] or "")
        return out


class VLLMEngine:
    """GPU engine (``pip install .[gpu]``). One ``LLM.chat`` call per batch of requests."""

    name = "vllm"

    def __init__(self, cfg: LLMConfig):
        from vllm import LLM

        self.model_id = cfg.model
        self.llm = LLM(model=resolve(cfg.model), tensor_parallel_size=cfg.tensor_parallel_size,
                       gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed,
                       max_model_len=cfg.n_ctx)

    @staticmethod
    def _params(r: ChatRequest):
        from vllm import SamplingParams

        kw = dict(temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=r.seed)
        if r.json_schema is not None:
            try:  # vLLM >= 0.10
                from vllm.sampling_params import StructuredOutputsParams

                kw["structured_outputs"] = StructuredOutputsParams(json=r.json_schema)
            except ImportError:  # older vLLM
                from vllm.sampling_params import GuidedDecodingParams

                kw["guided_decoding"] = GuidedDecodingParams(json=r.json_schema)
        return SamplingParams(**kw)

    def chat(self, requests):
        if not requests:
            return []
        outs = self.llm.chat([r.messages for r in requests], sampling_params=[self._params(r) for r in requests],
                             use_tqdm=True)
        return [o.outputs[0].text for o in outs]


class OpenAIEngine:
    """Any OpenAI-compatible /v1/chat/completions server; requests sent concurrently."""

    name = "openai"

    def __init__(self, cfg: LLMConfig, concurrency: int = 8):
        if not cfg.base_url:
            raise ValueError("llm.base_url is required for the openai engine (e.g. http://127.0.0.1:8000/v1)")
        self.base_url = cfg.base_url.rstrip("/")
        self.model_id = cfg.model
        self.concurrency = concurrency

    def _one(self, r: ChatRequest) -> str:
        body = {"model": self.model_id, "messages": r.messages, "max_tokens": r.max_tokens,
                "temperature": r.temperature, "top_p": r.top_p, "seed": r.seed}
        if r.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": r.json_schema}}
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as resp:
            return json.loads(resp.read())["choices"][0]["message"]["content"] or ""

    def chat(self, requests):
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._one, requests))


def load_llm(cfg: LLMConfig) -> LLMEngine:
    engines = {"llama-cpp": LlamaCppEngine, "vllm": VLLMEngine, "openai": OpenAIEngine}
    if cfg.backend not in engines:
        raise ValueError(f"unknown LLM backend {cfg.backend!r}; known: {', '.join(engines)}")
    return engines[cfg.backend](cfg)
