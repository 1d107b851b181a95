"""Cooperative claims: several processes (or machines on a shared filesystem) finish one run together.

A unit of work (one shard of one stage, or the export) is claimed by creating
``_work/claims/<stage>-NNNNN.claim`` with ``O_CREAT | O_EXCL``: exactly one process wins. The file names its
holder (host, pid, process start time, a random token) and its mtime is a heartbeat, refreshed by a
background thread while the holder works. A claim is *stale*, and may be taken over, when

- its holder ran on this machine (same host and boot id) and that process is gone (pid dead, or the pid
  now belongs to a process that started at another time), or
- its heartbeat is older than ``ttl_s`` (a holder on another machine that died or lost the filesystem).

Takeover is safe against other takers: the stale file is renamed to a name unique to the taker (only one
rename of a file can succeed), its content is checked to be the stale claim that was judged, and only then
is a fresh claim created with ``O_EXCL``. A claim that turns out to be live after all is put back with
``link`` (which never overwrites).

This module knows nothing about plans or sources (the plan format is separate; see pipeline.run.plan).
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TTL_S = 120.0


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


HOST = socket.gethostname()
BOOT = _boot_id()


def identity() -> dict:
    pid = os.getpid()
    return {"host": HOST, "boot_id": BOOT, "pid": pid, "start": _start_time(pid)}


def same_machine(info: dict) -> bool:
    return info.get("host") == HOST and info.get("boot_id", "") == BOOT


def process_alive(info: dict) -> bool:
    """Whether the process ``info`` names (a claim's or a lock's holder on this machine) still runs."""
    pid = int(info.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    start = info.get("start")
    return not start or _start_time(pid) in ("", start)


def describe(info: dict | None) -> str:
    if not info:
        return "an unknown process"
    return f"pid {info.get('pid')} on host {info.get('host')}"


class _Heartbeat:
    """One daemon thread per process that touches every claim this process holds."""

    def __init__(self):
        self.held: dict[Path, float] = {}  # claim -> its ttl
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        return max(min(self.held.values(), default=DEFAULT_TTL_S) / 4, 0.05)

    def add(self, path: Path, ttl_s: float) -> None:
        with self.lock:
            self.held[path] = ttl_s
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="claim-heartbeat", daemon=True)
                self.thread.start()

    def discard(self, path: Path) -> None:
        with self.lock:
            self.held.pop(path, None)

    def _loop(self) -> None:
        last = time.time()
        while True:
            time.sleep(min(self.interval, 1.0))
            if time.time() - last < self.interval:
                continue
            last = time.time()
            with self.lock:
                paths = list(self.held)
            for p in paths:
                try:
                    os.utime(p)
                except OSError:
                    pass


HEARTBEAT = _Heartbeat()


@dataclass
class Claim:
    path: Path
    token: str

    def mine(self) -> bool:
        """Whether this process still holds the claim (it was not taken over as stale)."""
        info = read(self.path)
        return bool(info) and info.get("token") == self.token

    def release(self) -> None:
        HEARTBEAT.discard(self.path)
        if self.mine():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


def is_stale(path: Path, info: dict | None, ttl_s: float) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # gone: not stale, just free
    if info is None:  # unreadable (being written right now, or a torn write by a dead writer)
        return age > max(ttl_s, 5.0)
    if same_machine(info):
        return not process_alive(info)
    return age > ttl_s


def _create(path: Path, info: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(info))
        f.flush()
        os.fsync(f.fileno())
    return True


def _take_over(path: Path, stale: dict | None) -> bool:
    """Move a stale claim aside; True when this process removed exactly the claim it judged stale."""
    aside = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # someone released or removed it: free now
    moved = read(aside)
    if (moved or {}).get("token") == (stale or {}).get("token"):
        aside.unlink(missing_ok=True)
        return True
    try:  # it was a fresh claim made after our judgement: put it back (link never overwrites)
        os.link(aside, path)
    except FileExistsError:
        pass
    except OSError:  # filesystem without hard links
        if not path.exists():
            os.rename(aside, path)
    aside.unlink(missing_ok=True)
    return False


def try_claim(path: Path, ttl_s: float = DEFAULT_TTL_S, what: str = "") -> Claim | None:
    """Claim ``path`` for this process; None when a live holder has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {**identity(), "token": uuid.uuid4().hex, "what": what, "since": round(time.time(), 3)}
    for _ in range(3):
        if _create(path, info):
            HEARTBEAT.add(path, ttl_s)
            return Claim(path, info["token"])
        held = read(path)
        if not is_stale(path, held, ttl_s):
            return None
        _take_over(path, held)
    return None


def holder(path: Path, ttl_s: float = DEFAULT_TTL_S) -> dict | None:
    """The live holder of ``path`` (None when nobody or only a stale holder has it)."""
    info = read(path)
    if not path.exists() or is_stale(path, info, ttl_s):
        return None
    return info or {}


def live_claims(folder: Path, ttl_s: float = DEFAULT_TTL_S) -> list[tuple[Path, dict]]:
    out = []
    if folder.exists():
        for p in sorted(folder.glob("*.claim")):
            h = holder(p, ttl_s)
            if h is not None:
                out.append((p, h))
    return out
