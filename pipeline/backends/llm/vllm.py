"""``vllm``: vLLM offline batched generation on GPU (``pip install .[gpu]``).

One ``LLM.chat`` call with a list of conversations and a list of ``SamplingParams`` (paired one by
one); JSON schemas are enforced with ``StructuredOutputsParams`` (vLLM >= 0.10.2;
``GuidedDecodingParams`` on older releases, where it was the only form; it was removed in later ones).
"""
from __future__ import annotations

from typing import Any

from pipeline.backends.llm.base import ChatRequest, Completion, Usage
from pipeline.core.config import LLMConfig
from pipeline.core.model_cache import resolve


def vllm_sampling_params(r: ChatRequest):
    """``SamplingParams`` for one request, JSON schema enforced by structured outputs."""
    from vllm import SamplingParams

    kw = dict(temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, seed=r.seed)
    if r.top_logprobs:
        kw["logprobs"] = int(r.top_logprobs)
    if r.json_schema is not None:
        try:  # vLLM >= 0.10.2: SamplingParams(structured_outputs=StructuredOutputsParams(json=...))
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(json=r.json_schema)
        except ImportError:  # older vLLM: SamplingParams(guided_decoding=GuidedDecodingParams(json=...))
            from vllm.sampling_params import GuidedDecodingParams

            kw["guided_decoding"] = GuidedDecodingParams(json=r.json_schema)
    return SamplingParams(**kw)


class VLLMEngine:
    """GPU engine. One ``LLM.chat`` call per batch of requests."""

    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int, gpu_memory_utilization: float, seed: int,
                 max_model_len: int):
        from vllm import LLM

        self.model_id = model
        self.usage = Usage()
        self.llm = LLM(model=resolve(model), tensor_parallel_size=tensor_parallel_size,
                       gpu_memory_utilization=gpu_memory_utilization, seed=seed, max_model_len=max_model_len)

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any) -> "VLLMEngine":
        return cls(cfg.model, tensor_parallel_size=cfg.tensor_parallel_size,
                   gpu_memory_utilization=cfg.gpu_memory_utilization, seed=cfg.seed, max_model_len=cfg.n_ctx)

    _params = staticmethod(vllm_sampling_params)

    def chat(self, requests: list[ChatRequest]) -> list[str]:
        return [c.text for c in self.complete(requests)]

    def complete(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        # LLM.chat(messages=list of conversations, sampling_params=list paired one by one with them)
        outs = self.llm.chat([r.messages for r in requests], sampling_params=[self._params(r) for r in requests],
                             use_tqdm=False)
        res = []
        for o in outs:
            c = o.outputs[0]
            top = None
            if c.logprobs:  # per position {token_id: Logprob(logprob, rank, decoded_token)}
                top = [{(lp.decoded_token or str(t)): float(lp.logprob) for t, lp in pos.items()} for pos in c.logprobs]
            comp = Completion(text=c.text, finish_reason=c.finish_reason, prompt_tokens=len(o.prompt_token_ids or []),
                              completion_tokens=len(c.token_ids or []),
                              cached_tokens=int(getattr(o, "num_cached_tokens", 0) or 0), top_logprobs=top)
            self.usage.add(comp.prompt_tokens, comp.completion_tokens, comp.cached_tokens,
                           truncated=comp.finish_reason == "length")
            res.append(comp)
        return res
