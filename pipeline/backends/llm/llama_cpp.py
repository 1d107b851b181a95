"""``llama-cpp``: llama.cpp in process on a GGUF (the embedded CPU default: Qwen2.5-0.5B-Instruct Q4_K_M).

JSON requests are constrained by a grammar built from the JSON schema. In-process llama.cpp serves
one sequence at a time, so a "batch" is run sequentially (the KV-cache prefix of the previous
request is reused, which is why requests of one kind are sent together).
"""
from __future__ import annotations

from typing import Any

from pipeline.backends.llm.base import ChatRequest, Usage
from pipeline.core.config import LLMConfig
from pipeline.core.model_cache import resolve


class LlamaCppEngine:
    name = "llama-cpp"

    def __init__(self, model: str, *, n_ctx: int, n_threads: int, seed: int):
        from llama_cpp import Llama

        self.model_id = model
        self.usage = Usage()
        self.llm = Llama(model_path=resolve(model), n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False)

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any) -> "LlamaCppEngine":
        return cls(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, seed=cfg.seed)

    def chat(self, requests: list[ChatRequest]) -> list[str]:
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
