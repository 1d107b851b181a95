"""The runner's stage objects: one per stage and process, closed when replaced or released, so that a
process running several datasets (tests, a Prefect worker) does not keep a llama-server per run."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.backends.llm.base import ChatRequest
from pipeline.core.config import load_profile
from pipeline.run import runner

SMOL = "embedded:smollm2-135m-instruct-q4_1"


def test_llm_stage_server_is_stopped_when_replaced_and_when_released():
    a = load_profile("en", **{"llm.model": SMOL, "llm.backend": "llama-cpp", "llm.slots": 2})
    b = load_profile("en", **{"llm.model": SMOL, "llm.backend": "llama-cpp", "llm.slots": 1})
    first = runner.worker("llm", a)
    assert runner.worker("llm", a) is first  # kept while the profile is the same
    proc = first.engine.server._proc
    assert proc is not None and proc.poll() is None
    second = runner.worker("llm", b)  # another profile: the first stage's server is stopped
    assert second is not first
    assert proc.wait(15) is not None
    proc2 = second.engine.server._proc
    assert proc2.poll() is None
    runner.release_workers()
    assert proc2.wait(15) is not None
    assert runner.worker("llm", b) is not second  # released: a fresh stage (and server) next time
    runner.release_workers()


def test_the_in_process_batched_engine_is_freed_when_released():
    stage_profile = load_profile("en", **{"llm.model": SMOL, "llm.slots": 2})
    stage = runner.worker("llm", stage_profile)
    # one sequence at a time: the runner gives it one shard at a time
    assert type(stage).in_flight(load_profile("en", **{"llm.backend": "llama-cpp-inprocess"})) == 1
    assert stage.engine.name == "llama-cpp-batched" and stage.thread_safe and type(stage).in_flight(stage_profile) == 2
    assert stage.engine.chat([ChatRequest(messages=[{"role": "user", "content": "Say hi."}], max_tokens=4)])[0]
    runner.release_workers()
    assert stage.engine._ctx is None and stage.engine._thread is None


def test_shards_in_flight_keeps_at_most_width_calls_running_and_yields_every_shard():
    running, peak, lock = [0], [0], threading.Lock()

    def work(k):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05 if k % 2 else 0.01)
        with lock:
            running[0] -= 1
        return {"shard": k}

    with ThreadPoolExecutor(3) as pool:
        got = list(runner._in_flight(pool, 3, list(range(10)), work))
    assert sorted(k for k, _ in got) == list(range(10)) and all(c["shard"] == k for k, c in got)
    assert peak[0] == 3
    assert [k for k, _ in runner._in_flight(None, 1, [4, 2, 9], lambda k: {"shard": k})] == [4, 2, 9]
