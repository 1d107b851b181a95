"""``llama-cpp-inprocess``: llama.cpp in process on a GGUF through llama-cpp-python's
``create_chat_completion`` (the embedded engine before ``llama-cpp``, which runs llama-server with slots;
also its fallback when the llama-server binary is missing).

JSON requests are constrained by a grammar built from the JSON schema. This path serves one sequence
at a time, so a "batch" is run sequentially (the KV-cache prefix of the previous request is reused,
which is why requests of one kind are sent together). ``bench/bench_llm.py`` compares it with ``llama-cpp``.
"""
from __future__ import annotations

from typing import Any

from pipeline.backends.llm.base import ChatRequest, Completion, Usage
from pipeline.core.config import LLMConfig
from pipeline.core.model_cache import resolve


class LlamaCppEngine:
    name = "llama-cpp-inprocess"

    def __init__(self, model: str, *, n_ctx: int, n_threads: int, seed: int):
        from llama_cpp import Llama

        self.model_id = model
        self.usage = Usage()
        self.llm = Llama(model_path=resolve(model), n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False)

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any) -> "LlamaCppEngine":
        return cls(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads, seed=cfg.seed)

    def chat(self, requests: list[ChatRequest]) -> list[str]:
        return [c.text for c in self.complete(requests)]

    def complete(self, requests: list[ChatRequest]) -> list[Completion]:
        out = []
        for r in requests:  # llama.cpp in-process serves one sequence at a time
            kw = {}
            if r.json_schema is not None:
                kw["response_format"] = {"type": "json_object", "schema": r.json_schema}
            if r.top_logprobs:  # llama-cpp-python needs Llama(logits_all=True) for this; it says so if not
                kw["logprobs"], kw["top_logprobs"] = True, int(r.top_logprobs)
            res = self.llm.create_chat_completion(
                messages=r.messages, max_tokens=r.max_tokens, temperature=r.temperature,
                top_p=r.top_p, seed=r.seed, **kw,
            )
            u = res.get("usage") or {}
            choice = res["choices"][0]
            c = Completion(text=choice["message"]["content"] or "", finish_reason=choice.get("finish_reason"),
                           prompt_tokens=int(u.get("prompt_tokens") or 0),
                           completion_tokens=int(u.get("completion_tokens") or 0))
            lp = choice.get("logprobs") or {}
            if lp.get("content"):
                c.top_logprobs = [{t["token"]: float(t["logprob"]) for t in (p.get("top_logprobs") or [p])}
                                  for p in lp["content"]]
            self.usage.add(c.prompt_tokens, c.completion_tokens, truncated=c.finish_reason == "length")
            out.append(c)
        return out
