"""LLM engines: the registry; the embedded ``llama-cpp`` engine (a real llama-server on the embedded GGUF:
concurrent slots, answers in order and schema-valid, prefix cache, restart after a crash, clear failure,
fallback when the binary is missing); the OpenAI-compatible engine against a real local llama_cpp.server."""
import json
import logging
import os
import signal
import threading
import time
import urllib.request

import jsonschema
import pytest

from pipeline.backends.llm import LLM, load_llm
from pipeline.backends.llm import llama_server as ls
from pipeline.backends.llm.base import ChatRequest
from pipeline.backends.llm.llama_cpp import LlamaCppEngine
from pipeline.backends.llm.llama_server import LlamaServerEngine, LlamaServerError, local_llama_server
from pipeline.core.config import LLMConfig
from pipeline.core.registry import UnknownBackend
from pipeline.quality.judge import JUDGE_SCHEMA, parse_judge
from pipeline.quality.qa import qa_schema

SMOL = "embedded:smollm2-135m-instruct-q4_1"
QWEN = "embedded:qwen2.5-0.5b-instruct-q4_k_m"  # the en profile's model
CITIES = ["Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Hanoi"]
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": CITIES}}, "required": ["city"],
               "additionalProperties": False}


def test_registry_names_every_configurable_backend():
    assert (set(LLM.names()) == set(LLMConfig.model_fields["backend"].annotation.__args__)
            == {"llama-cpp", "llama-cpp-batched", "llama-cpp-inprocess", "vllm", "openai"})
    for entry in LLM:
        if not entry.missing():
            cls = entry.load()
            assert cls.name == entry.name and callable(getattr(cls, "from_config", None)) and callable(cls.chat)
            assert callable(getattr(cls, "complete", None))
    with pytest.raises(UnknownBackend, match="known: llama-cpp, llama-cpp-batched, llama-cpp-inprocess, vllm, openai"):
        load_llm(LLMConfig.model_construct(backend="nope"))
    with pytest.raises(ValueError, match="base_url is required"):
        load_llm(LLMConfig(backend="openai"))


# ---- the binary: found, or a clear error, or the in-process engine with a log line --------------------
@pytest.fixture
def no_server_binary(monkeypatch, tmp_path):
    monkeypatch.setattr(ls, "cached_binary", lambda: tmp_path / "llama-server-missing")
    monkeypatch.delenv(ls.BINARY_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))


def test_missing_binary_is_a_clear_error_or_a_logged_fallback(no_server_binary, caplog):
    with pytest.raises(LlamaServerError, match="llama-server not found .*make setup"):
        load_llm(LLMConfig(model=SMOL, backend="llama-cpp", server_fallback=False))
    with pytest.raises(LlamaServerError, match="not an executable"):
        load_llm(LLMConfig(model=SMOL, backend="llama-cpp", server_binary="/nonexistent/llama-server"))
    with caplog.at_level(logging.WARNING, logger="pipeline.backends.llm.llama_server"):
        eng = load_llm(LLMConfig(model=SMOL, backend="llama-cpp"))
    assert isinstance(eng, LlamaCppEngine) and eng.name == "llama-cpp-inprocess"
    assert any("llama-server not found" in r.message and "in-process" in r.message for r in caplog.records)


def test_make_setup_built_the_server():
    path = ls.find_server_binary()  # raises (naming `make setup`) when it is not there
    assert os.access(path, os.X_OK)


# ---- the embedded engine: a real llama-server on the profile's GGUF -----------------------------------
@pytest.fixture(scope="module")
def engine():
    eng = load_llm(LLMConfig(model=QWEN, backend="llama-cpp", slots=3, n_ctx=512, server_restarts=1))
    assert isinstance(eng, LlamaServerEngine)
    yield eng
    eng.close()
    assert not eng.server.alive()


def city_requests(seed: int = 0) -> list[ChatRequest]:
    system = ("You fill in JSON forms. Read the user's sentence and copy the city it names into the field "
              "\"city\". Answer with the JSON object only.")
    return [ChatRequest(messages=[{"role": "system", "content": system},
                                  {"role": "user", "content": f"Sentence: Tomorrow morning I fly to {c} for a week."}],
                        max_tokens=24, temperature=0.0, seed=seed + i, json_schema=CITY_SCHEMA)
            for i, c in enumerate(CITIES)]


def slots_state(eng) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{eng.server.port}/slots", timeout=10) as r:
        return json.loads(r.read())


def test_concurrent_requests_come_back_complete_valid_and_in_order(engine):
    reqs = city_requests()
    before = engine.usage.snapshot()
    outs = engine.complete(reqs)
    assert len(outs) == len(reqs)
    for c, city in zip(outs, CITIES):  # the i-th answer is the i-th request's: each names its own city
        jsonschema.validate(json.loads(c.text), CITY_SCHEMA)
        assert json.loads(c.text)["city"] == city, (city, c.text)
        assert c.finish_reason == "stop" and c.completion_tokens > 0 and c.prompt_tokens > 20
    assert engine.usage.requests - before["requests"] == len(reqs)
    # the requests were decoded on several slots at once: sent one at a time they would all have gone to
    # the slot whose cached prompt matches best (the same one), leaving the others empty
    used = [s for s in slots_state(engine) if s.get("id_task", -1) != -1]
    assert len(used) > 1, slots_state(engine)
    # chat() is complete()'s texts, and the answers do not depend on what else is in flight
    assert engine.chat(reqs[:2]) == [c.text for c in outs[:2]]


def test_shared_system_prompt_is_computed_once_per_slot(engine):
    # the slots hold the system prompt of the requests above (the same server, module-scoped)
    outs = engine.complete(city_requests(seed=100)[:3])
    system_tokens = 20  # the system prompt alone is longer than this
    assert all(c.cached_tokens >= system_tokens for c in outs), [c.cached_tokens for c in outs]
    assert engine.usage.cached_prompt_tokens >= system_tokens * len(outs)


def test_long_json_answers_through_the_engine(engine):
    reqs = [ChatRequest(messages=[{"role": "system", "content": "You write quiz questions about a sentence, as JSON."},
                                  {"role": "user", "content": f"Sentence: The museum opens at {h} in the morning. "
                                                              "Write 1 question/answer pair."}],
                        max_tokens=90, temperature=0.7, seed=h, json_schema=qa_schema(1)) for h in (7, 8)]
    for raw in engine.chat(reqs):
        jsonschema.validate(json.loads(raw), qa_schema(1))
    judged = engine.complete([ChatRequest(messages=[{"role": "user", "content": "Rate: the museum opens at nine."}],
                                          max_tokens=40, temperature=0.0, json_schema=JUDGE_SCHEMA, top_logprobs=5)])
    assert parse_judge(judged[0].text)[1] is None, judged
    # token log-probabilities come back per generated token (the probability judge reads the first one)
    top = judged[0].top_logprobs
    assert top and len(top) == judged[0].completion_tokens and all(1 <= len(p) <= 5 for p in top)
    assert all(lp <= 0.0 for p in top for lp in p.values())


def wait_until_processing(eng, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(s.get("is_processing") for s in slots_state(eng)):
            return
        time.sleep(0.05)
    raise AssertionError("no slot started processing")


def test_killed_server_is_restarted_and_dropped_requests_are_sent_again(engine):
    pid0 = engine.server.pid
    reqs = city_requests(seed=200)
    got = {}
    t = threading.Thread(target=lambda: got.update(outs=engine.chat(reqs)))
    t.start()
    wait_until_processing(engine)
    os.kill(pid0, signal.SIGKILL)  # the server dies with requests in flight
    t.join(300)
    assert not t.is_alive()
    assert engine.server.restarts == 1 and engine.server.pid != pid0 and engine.server.alive()
    assert [json.loads(o)["city"] for o in got["outs"]] == CITIES  # all complete, in order
    # restarts are bounded (server_restarts=1 here): the next crash fails the call with the exit code and the log
    os.kill(engine.server.pid, signal.SIGKILL)
    engine.server._proc.wait()
    with pytest.raises(LlamaServerError, match=r"exited with code -9; it was restarted 1 time\(s\) already"):
        engine.chat(reqs[:2])


def test_server_that_cannot_start_fails_clearly(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LlamaServerError, match="exited with code .* while starting"):
        load_llm(LLMConfig(model=str(bad), backend="llama-cpp", slots=1))


# ---- OpenAI-compatible engine against a real local llama_cpp.server (json_object fallback) -------------
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
