"""LLM engines: the registry, and the OpenAI-compatible engine against a real local llama_cpp.server."""
import pytest

from pipeline.backends.llm import LLM, load_llm
from pipeline.backends.llm.base import ChatRequest
from pipeline.backends.llm.llama_server import local_llama_server
from pipeline.core.config import LLMConfig
from pipeline.core.registry import UnknownBackend
from pipeline.quality.judge import JUDGE_SCHEMA, parse_judge
from pipeline.quality.qa import qa_schema

SMOL = "embedded:smollm2-135m-instruct-q4_1"


def test_registry_names_every_configurable_backend():
    assert set(LLM.names()) == set(LLMConfig.model_fields["backend"].annotation.__args__) == {"llama-cpp", "vllm", "openai"}
    for entry in LLM:
        if not entry.missing():
            cls = entry.load()
            assert cls.name == entry.name and callable(getattr(cls, "from_config", None)) and callable(cls.chat)
    with pytest.raises(UnknownBackend, match="known: llama-cpp, vllm, openai"):
        load_llm(LLMConfig.model_construct(backend="nope"))
    with pytest.raises(ValueError, match="base_url is required"):
        load_llm(LLMConfig(backend="openai"))


# ---- OpenAI-compatible engine against a real local server ---------------------------------------------
@pytest.fixture(scope="module")
def server():
    with local_llama_server(SMOL, n_threads=2) as base:
        yield base


def test_openai_engine_against_llama_cpp_server(server):
    cfg = LLMConfig(backend="openai", base_url=server, model=SMOL, concurrency=2)
    engine = load_llm(cfg)
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"Rate answer {i}: the museum opens at nine."}],
                        max_tokens=40, temperature=0.0, seed=i, json_schema=JUDGE_SCHEMA) for i in range(2)]
    outs = engine.chat(reqs)
    assert len(outs) == 2
    for raw in outs:  # schema enforced by the server's grammar (json_object + schema after json_schema is refused)
        assert parse_judge(raw)[1] is None, raw
    assert engine.format == "json_object"
    # answers come back in request order whatever the concurrency
    seq = load_llm(cfg.model_copy(update={"concurrency": 1}))
    seq.format = "json_object"
    assert seq.chat(reqs) == outs
    assert engine.usage.requests >= 2 and engine.usage.completion_tokens > 0
    # a QA request with the pairs schema through the server
    raw = engine.chat([ChatRequest(messages=[{"role": "user", "content": "Ask one question about: the museum opens at nine."}],
                                   max_tokens=16, temperature=0.0, json_schema=qa_schema(1))])[0]
    assert raw.lstrip().startswith("{") and '"pairs"' in raw[:20], raw  # the grammar made it start as the schema says
