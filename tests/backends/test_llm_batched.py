"""The in-process batched engine (``llama-cpp-batched``) on the embedded GGUF: many requests in one call come
back complete, schema-valid and in request order; shared conversation prefixes are read once and copied; the
finish reason says when max_tokens cut an answer; top log-probabilities; a request too long for its slot is a
clear error; memory is sized by slots (the KV cache does not grow with the number of requests)."""
import dataclasses
import json
import threading

import jsonschema
import pytest

from pipeline.backends.llm import load_llm
from pipeline.backends.llm.base import ChatRequest
from pipeline.backends.llm.llama_batched import LlamaBatchedEngine, LlamaBatchedError, _property_order
from pipeline.core.config import LLMConfig
from pipeline.quality.qa import parse_qa_pairs, qa_schema

QWEN = "embedded:qwen2.5-0.5b-instruct-q4_k_m"
CITIES = ["Paris", "Tokyo", "Lima", "Cairo", "Oslo", "Hanoi", "Quito", "Seoul"]
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": CITIES}}, "required": ["city"],
               "additionalProperties": False}
SYSTEM = ("You fill in JSON forms. Read the user's sentence and copy the city it names into the field "
          "\"city\". Answer with the JSON object only.")


@pytest.fixture(scope="module")
def engine():
    eng = load_llm(LLMConfig(model=QWEN, backend="llama-cpp-batched", slots=3, n_ctx=512))
    assert isinstance(eng, LlamaBatchedEngine)
    yield eng
    eng.close()


def city_requests(seed: int = 0, schema: dict | None = CITY_SCHEMA) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "system", "content": SYSTEM},
                                  {"role": "user", "content": f"Sentence: Tomorrow morning I fly to {c} for a week."}],
                        max_tokens=24, temperature=0.0, seed=seed + i, json_schema=schema)
            for i, c in enumerate(CITIES)]


def test_more_requests_than_slots_come_back_complete_valid_and_in_order(engine):
    reqs = city_requests()
    before = engine.usage.snapshot()
    outs = engine.complete(reqs)  # 8 requests through 3 slots: slots are refilled as answers finish
    assert len(outs) == len(reqs)
    for c, city in zip(outs, CITIES):  # the i-th answer is the i-th request's: each names its own city
        jsonschema.validate(json.loads(c.text), CITY_SCHEMA)
        assert json.loads(c.text)["city"] == city, (city, c.text)
        assert c.finish_reason == "stop" and c.completion_tokens > 0 and c.prompt_tokens > 40
    assert engine.usage.requests - before["requests"] == len(reqs)
    # the shared system prompt (~30 tokens) was read once and copied: every request reports it as cached
    assert all(c.cached_tokens >= 25 and c.cached_tokens < c.prompt_tokens for c in outs), [c.cached_tokens for c in outs]
    # a greedy answer does not depend on what else is decoded with it; the same prompt again starts from its kept
    # KV cells: only its last token is read
    alone = engine.complete([reqs[5]])[0]
    assert json.loads(alone.text) == json.loads(outs[5].text)
    assert alone.cached_tokens == alone.prompt_tokens - 1


def test_kept_prompts_are_reused_bounded_and_give_the_same_answers(monkeypatch):
    eng = LlamaBatchedEngine(QWEN, slots=2, n_ctx=512, keep=2)
    try:
        reqs = city_requests()[:4]
        first = eng.complete(reqs)
        assert len(eng._kept) == 2  # four prompts finished, two kept (least recently used out)
        hits = eng.steps["kept_hits"]
        again = eng.complete([dataclasses.replace(r, seed=99) for r in reqs[2:]])  # a retry: the same prompts
        assert eng.steps["kept_hits"] - hits == 2
        assert [c.cached_tokens for c in again] == [c.prompt_tokens - 1 for c in again]
        assert [json.loads(c.text) for c in again] == [json.loads(c.text) for c in first[2:]]  # greedy: same answers
        # a prompt that only starts like a kept one reuses the common part (beyond the shared system prompt)
        other = ChatRequest(messages=[reqs[3].messages[0], {"role": "user", "content": reqs[3].messages[1]["content"]
                                                            .replace("for a week.", "for two days.")}],
                            max_tokens=24, temperature=0.0, json_schema=CITY_SCHEMA)
        c = eng.complete([other])[0]
        assert first[3].cached_tokens < c.cached_tokens < c.prompt_tokens - 1
        assert json.loads(c.text)["city"] == CITIES[3]
        # when the KV cache is full the kept prompts are dropped first, and the step is decoded again
        assert eng._kept
        real, calls = eng.L.llama_decode, {"n": 0}

        def full_once(ctx, batch):
            calls["n"] += 1
            return 1 if calls["n"] == 1 else real(ctx, batch)

        monkeypatch.setattr(eng.L, "llama_decode", full_once)
        c = eng.complete([city_requests(seed=5)[6]])[0]
        assert json.loads(c.text)["city"] == CITIES[6] and calls["n"] > 1
        assert len(eng._kept) == 1 and len(eng._free_kept) == 1  # only the prompt that just finished is kept
    finally:
        eng.close()


def test_callers_in_two_threads_are_decoded_together(engine):
    reqs = city_requests(seed=50)
    results = {}

    def run(name, part):
        results[name] = engine.complete(part)

    threads = [threading.Thread(target=run, args=("a", reqs[:4])), threading.Thread(target=run, args=("b", reqs[4:]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    got = [json.loads(c.text)["city"] for c in results["a"] + results["b"]]
    assert got == CITIES


def test_free_text_without_a_schema_and_the_length_cut(engine):
    reqs = [ChatRequest(messages=[{"role": "user", "content": "Count from one to fifty in words, separated by commas."}],
                        max_tokens=12, temperature=0.7, seed=3),
            ChatRequest(messages=[{"role": "user", "content": "Say only the word: hello"}], max_tokens=20,
                        temperature=0.0, seed=4)]
    cut, short = engine.complete(reqs)
    assert cut.finish_reason == "length" and cut.completion_tokens == 12 and "one" in cut.text.lower()
    assert short.finish_reason == "stop" and "hello" in short.text.lower()
    assert engine.usage.truncated >= 1


def test_qa_json_follows_the_schema_order_and_parses(engine):
    schema = qa_schema(2)
    assert _property_order(schema)[:1] == ["pairs"] and _property_order(schema).index("question") < _property_order(schema).index("answer")
    reqs = [ChatRequest(messages=[{"role": "system", "content": "You write quiz questions about a sentence, as JSON."},
                                  {"role": "user", "content": f"Sentence: The museum opens at {h} in the morning. "
                                                              "Write 2 question/answer pairs."}],
                        max_tokens=120, temperature=0.7, seed=i, json_schema=schema)
            for i, h in enumerate(("seven", "eight", "nine"))]
    for c in engine.complete(reqs):
        jsonschema.validate(json.loads(c.text), schema)
        pairs, fail = parse_qa_pairs(c.text)
        assert fail is None and pairs
        assert c.text.index('"question"') < c.text.index('"answer"')  # the question is written first


def test_top_logprobs_per_generated_token(engine):
    c = engine.complete([ChatRequest(messages=[{"role": "user", "content": "Is Paris in France? Answer Yes or No."}],
                                     max_tokens=4, temperature=0.0, top_logprobs=5)])[0]
    assert c.top_logprobs and len(c.top_logprobs) >= c.completion_tokens
    assert all(1 <= len(p) <= 5 and all(lp <= 0.0 for lp in p.values()) for p in c.top_logprobs)
    first = c.top_logprobs[0]
    assert max(first, key=first.get).strip().lower().startswith("yes"), first


def test_a_request_longer_than_a_slot_is_a_clear_error(engine):
    long = ChatRequest(messages=[{"role": "user", "content": "word " * 600}], max_tokens=10)
    with pytest.raises(LlamaBatchedError, match="n_ctx 512"):
        engine.complete([long])
    # the engine is still usable after the refusal
    assert json.loads(engine.complete(city_requests()[:1])[0].text)["city"] == "Paris"


def test_a_failed_decode_fails_the_requests_in_flight_clearly_and_the_next_call_works(engine, monkeypatch):
    calls = {"n": 0}
    real = engine._decode

    def flaky():
        calls["n"] += 1
        if calls["n"] == 3:  # mid-answer, with several requests live
            raise LlamaBatchedError("llama_decode failed (1: the KV cache is full)")
        real()

    monkeypatch.setattr(engine, "_decode", flaky)
    with pytest.raises(LlamaBatchedError, match="llama.cpp failed: .*KV cache is full"):
        engine.complete(city_requests(seed=7))
    monkeypatch.undo()
    outs = engine.complete(city_requests(seed=8)[:3])  # slots, prefixes and KV cells were all freed
    assert [json.loads(c.text)["city"] for c in outs] == CITIES[:3]


def test_a_file_that_is_not_a_model_fails_clearly(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(LlamaBatchedError, match="could not load .*broken.gguf"):
        load_llm(LLMConfig(model=str(bad), backend="llama-cpp-batched", slots=1))
