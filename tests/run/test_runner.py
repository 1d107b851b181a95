"""The runner's stage objects: one per stage and process, closed when replaced or released, so that a
process running several datasets (tests, a Prefect worker) does not keep a llama-server per run."""
from __future__ import annotations

from pipeline.core.config import load_profile
from pipeline.run import runner

SMOL = "embedded:smollm2-135m-instruct-q4_1"


def test_llm_stage_server_is_stopped_when_replaced_and_when_released():
    a = load_profile("en", **{"llm.model": SMOL, "llm.slots": 2})
    b = load_profile("en", **{"llm.model": SMOL, "llm.slots": 1})
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
