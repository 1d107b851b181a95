"""Cooperative claims (pipeline.run.claims): one winner, dead holders taken over, live ones respected."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from pipeline.run import claims
from tests.conftest import ROOT, env_for_subprocess

HOLD = textwrap.dedent("""
    import sys, time, os
    from pathlib import Path
    from pipeline.run import claims
    c = claims.try_claim(Path(sys.argv[1]), ttl_s=60)
    print("claimed" if c else "refused", flush=True)
    if sys.argv[2] == "exit":
        os._exit(0)          # dies holding the claim (like SIGKILL: no clean-up runs)
    while not Path(sys.argv[3]).exists():
        time.sleep(0.02)
    c.release()
""")


def _holder(path, mode, stop=None):
    return subprocess.Popen([sys.executable, "-c", HOLD, str(path), mode, str(stop or "-")], cwd=ROOT,
                            env=env_for_subprocess(), stdout=subprocess.PIPE, text=True)


def test_one_claim_wins_and_release_frees_it(tmp_path):
    path = tmp_path / "c" / "ingest-00000.claim"
    a = claims.try_claim(path)
    assert a is not None and a.mine()
    assert claims.try_claim(path) is None  # held by a live process (this one)
    info = claims.holder(path)
    assert info["pid"] == os.getpid() and info["host"] == claims.HOST
    a.release()
    assert not path.exists()
    b = claims.try_claim(path)
    assert b is not None and b.token != a.token
    b.release()


def test_live_holder_in_another_process_is_respected_and_named(tmp_path):
    path, stop = tmp_path / "x.claim", tmp_path / "stop"
    p = _holder(path, "hold", stop)
    assert p.stdout.readline().strip() == "claimed"
    try:
        assert claims.try_claim(path) is None
        info = claims.holder(path)
        assert info["pid"] == p.pid and info["host"] == claims.HOST
        assert f"pid {p.pid} on host {claims.HOST}" == claims.describe(info)
    finally:
        stop.touch()
        p.wait(60)
    assert not path.exists()  # released by its holder
    c = claims.try_claim(path)
    assert c is not None
    c.release()


def test_claim_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / "x.claim"
    p = _holder(path, "exit")
    assert p.stdout.readline().strip() == "claimed"
    p.wait(60)
    dead = claims.read(path)
    assert dead["pid"] == p.pid and not claims.process_alive(dead)
    assert claims.holder(path) is None  # stale: nobody holds it
    c = claims.try_claim(path)
    assert c is not None and claims.read(path)["pid"] == os.getpid()
    c.release()


def test_claim_of_another_machine_is_stale_only_after_its_heartbeat_stops(tmp_path):
    path = tmp_path / "x.claim"
    path.write_text(json.dumps({"host": "elsewhere", "boot_id": "b", "pid": 1, "start": "1", "token": "t"}))
    assert claims.try_claim(path, ttl_s=60) is None  # fresh heartbeat: pid cannot be checked from here
    old = time.time() - 120
    os.utime(path, (old, old))
    c = claims.try_claim(path, ttl_s=60)
    assert c is not None and claims.read(path)["token"] == c.token
    c.release()


def test_reused_pid_does_not_keep_a_claim_alive(tmp_path):
    path = tmp_path / "x.claim"
    info = {**claims.identity(), "start": "1", "token": "t"}  # our pid, but a process that started at tick 1
    path.write_text(json.dumps(info))
    assert not claims.process_alive(info)
    c = claims.try_claim(path)
    assert c is not None
    c.release()


RACE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.run import claims
    while not Path(sys.argv[2]).exists():
        pass
    c = claims.try_claim(Path(sys.argv[1]), ttl_s=60)
    print("won" if c else "lost", flush=True)
    time.sleep(1.0)  # hold it while the others try
""")


def test_many_takers_of_one_stale_claim_one_winner(tmp_path):
    path, go = tmp_path / "x.claim", tmp_path / "go"
    path.write_text(json.dumps({**claims.identity(), "pid": 2 ** 22 + 7, "token": "dead"}))  # no such pid
    ps = [subprocess.Popen([sys.executable, "-c", RACE, str(path), str(go)], cwd=ROOT, env=env_for_subprocess(),
                           stdout=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(1.5)  # let them all reach the start line
    go.touch()
    results = [p.communicate(timeout=120)[0].strip() for p in ps]
    assert sorted(results) == ["lost"] * 5 + ["won"], results
    assert not list(tmp_path.glob(".*stale-*"))  # no leftovers of the takeover


@pytest.mark.parametrize("ttl", [0.4])
def test_heartbeat_keeps_a_long_claim_fresh(tmp_path, ttl):
    path = tmp_path / "x.claim"
    c = claims.try_claim(path, ttl_s=ttl)
    first = path.stat().st_mtime_ns
    deadline = time.time() + 30
    while path.stat().st_mtime_ns == first and time.time() < deadline:
        time.sleep(0.05)
    assert path.stat().st_mtime_ns > first  # touched by the heartbeat thread
    c.release()
