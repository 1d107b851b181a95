"""LLM engines behind one protocol (``pipeline.backends.llm.base.LLMEngine``): batched chat requests in,
raw texts out. One file per engine; this module only registers them (nothing heavy is imported here).

- ``llama-cpp``: llama.cpp's ``llama-server`` on a GGUF (CPU default), ``slots`` sequences decoded together,
  prompt prefixes cached per slot, JSON constrained by a grammar; driven by the ``openai`` client.
  Falls back to ``llama-cpp-inprocess`` (with a warning) when the server binary is missing.
- ``llama-cpp-batched``: llama.cpp in process through the low-level bindings, ``slots`` sequences per decode
  step, shared prompt prefixes decoded once and copied, a sampler and a JSON grammar per sequence.
- ``llama-cpp-inprocess``: llama.cpp in process (llama-cpp-python), one sequence at a time.
- ``vllm``: vLLM offline batched generation on GPU, JSON by structured outputs.
- ``openai``: any OpenAI-compatible ``/v1/chat/completions`` server (``vllm serve``,
  ``python -m llama_cpp.server``; a local one: ``pipeline.backends.llm.llama_server``).
"""
from __future__ import annotations

from pipeline.backends.llm.base import LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.registry import Registry

LLM: Registry[LLMEngine] = Registry("llm", LLMEngine)
LLM.add("llama-cpp", "pipeline.backends.llm.llama_server:LlamaServerEngine",
        doc="llama.cpp's llama-server on a GGUF (CPU), batched slots and prefix cache (built by make setup)")
LLM.add("llama-cpp-batched", "pipeline.backends.llm.llama_batched:LlamaBatchedEngine", requires={"llama_cpp": "llama-cpp-python"},
        doc="llama.cpp in process on a GGUF (CPU), slots sequences decoded together, shared prompt prefixes computed once")
LLM.add("llama-cpp-inprocess", "pipeline.backends.llm.llama_cpp:LlamaCppEngine", requires={"llama_cpp": "llama-cpp-python"},
        doc="llama.cpp in process on a GGUF (CPU), one sequence at a time")
LLM.add("vllm", "pipeline.backends.llm.vllm:VLLMEngine", requires={"vllm": "vllm"},
        doc="vLLM offline batched generation (GPU)")
LLM.add("openai", "pipeline.backends.llm.openai:OpenAIEngine", doc="OpenAI-compatible chat completions server")


def load_llm(cfg: LLMConfig) -> LLMEngine:
    return LLM.get(cfg.backend).from_config(cfg)


__all__ = ["LLM", "LLMEngine", "load_llm"]
