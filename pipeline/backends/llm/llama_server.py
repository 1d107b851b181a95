"""``llama-cpp``: llama.cpp's own ``llama-server`` on a GGUF, started and stopped by the engine, driven by
the ``openai`` client (the same code that talks to ``vllm serve`` in production).

Why a server and not llama.cpp in process: ``llama-server -np N`` decodes its N slots together
(continuous batching, one ``llama_batch`` per step with a token for every live sequence), enforces a
JSON schema per request (a grammar per slot) and keeps each slot's last prompt in its KV cache
(``cache_prompt``): a request is sent to the idle slot whose cached prompt shares the longest prefix
with it, so requests with one system prompt compute it once per slot. ``bench/bench_llm.py`` measures
it against the in-process engine (``llama-cpp-inprocess``) on the same prompts.

The binary is built by ``make setup`` from the llama.cpp sources inside the llama-cpp-python sdist and
cached as ``~/.cache/speechinstruct/bin/llama-server-<version>`` (``llm.server_binary``, or the
``SPEECHINSTRUCT_LLAMA_SERVER`` environment variable, or ``llama-server`` on PATH, override it). When
it is missing the engine logs a warning and falls back to the in-process engine
(``llm.server_fallback: false`` makes that an error).

The server listens on 127.0.0.1 only; its KV cache is sized by ``slots * n_ctx`` and its host prompt
cache by ``server_cache_ram_mib``, so memory does not grow with the dataset. A server that dies is
restarted (``server_restarts`` times per engine) and the requests it dropped are sent again; after
that the call fails with the exit code and the tail of the server's log.

``local_llama_server`` (below) runs llama-cpp-python's own ``python -m llama_cpp.server`` instead
(one sequence at a time; kept for the ``openai`` engine's json_object fallback test).
"""
from __future__ import annotations

import contextlib
import ctypes
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipeline.backends.llm.openai import OpenAIEngine
from pipeline.core.config import LLMConfig
from pipeline.core.model_cache import resolve

logger = logging.getLogger(__name__)

LLAMA_CPP_VERSION = "0.3.36"  # the llama-cpp-python sdist whose vendor/llama.cpp `make setup` builds
BINARY_ENV = "SPEECHINSTRUCT_LLAMA_SERVER"


def cached_binary() -> Path:
    return Path.home() / ".cache" / "speechinstruct" / "bin" / f"llama-server-{LLAMA_CPP_VERSION}"


class LlamaServerError(RuntimeError):
    """llama-server is missing, did not start, or died more often than it may be restarted."""


def find_server_binary(explicit: str | None = None) -> str:
    """The llama-server to run: ``explicit`` (llm.server_binary), else $SPEECHINSTRUCT_LLAMA_SERVER, else the
    ``make setup`` build, else ``llama-server`` on PATH. Raises LlamaServerError naming where it looked."""
    if explicit:
        p = shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
        if not p:
            raise LlamaServerError(f"llm.server_binary={explicit!r} is not an executable file")
        return p
    looked = []
    env = os.environ.get(BINARY_ENV)
    if env:
        if os.access(env, os.X_OK):
            return env
        looked.append(f"${BINARY_ENV}={env}")
    c = cached_binary()
    if os.access(c, os.X_OK):
        return str(c)
    looked.append(str(c))
    on_path = shutil.which("llama-server")
    if on_path:
        return on_path
    looked.append("llama-server on PATH")
    raise LlamaServerError("llama-server not found (looked at: " + ", ".join(looked) + "); `make setup` builds it "
                           "(from the llama.cpp sources in the llama-cpp-python sdist, about 7 min of CPU on 2 cores)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec: SIGTERM when the spawning thread exits
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen | None, owner: int, wait_s: float = 10.0) -> None:
    if proc is None or os.getpid() != owner or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LlamaServer:
    """One ``llama-server`` process on 127.0.0.1: start, health check, restart, stop.

    The process is spawned from one long-lived thread and dies with it (PR_SET_PDEATHSIG), so a
    pipeline killed with SIGKILL leaves no server behind; ``stop()`` (or garbage collection, or
    interpreter exit) terminates it. A forked child never stops its parent's server."""

    def __init__(self, model: str, *, binary: str | None = None, slots: int = 8, n_ctx: int = 2048,
                 n_threads: int = 2, cache_ram_mib: int = 512, start_timeout_s: float = 120.0, max_restarts: int = 2,
                 extra_args: list[str] | tuple[str, ...] = ()):
        self.model = model
        self.binary = find_server_binary(binary)
        self.model_path = resolve(model)
        self.slots, self.n_ctx, self.n_threads = slots, n_ctx, n_threads
        self.cache_ram_mib, self.start_timeout_s, self.max_restarts = cache_ram_mib, start_timeout_s, max_restarts
        self.extra_args = list(extra_args)
        self.restarts = 0
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log: Any = None
        self._lock = threading.Lock()
        self._owner = os.getpid()
        self._spawner: ThreadPoolExecutor | None = None
        self._finalizer = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self, port: int) -> list[str]:
        # -c is the whole KV cache, split evenly over the slots: every slot holds n_ctx tokens
        return [self.binary, "-m", self.model_path, "--alias", self.model, "--host", "127.0.0.1", "--port", str(port),
                "-t", str(self.n_threads), "-tb", str(self.n_threads), "-np", str(self.slots),
                "-c", str(self.n_ctx * self.slots), "--cache-ram", str(self.cache_ram_mib), "--no-webui",
                *self.extra_args]

    def log_tail(self, n: int = 3000) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(Exception):
            self._log.flush()
            with open(self._log.name, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n))
                return f.read().decode(errors="replace")
        return ""

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def died_within(self, seconds: float) -> bool:
        """True when the process has exited or exits within ``seconds`` (a dropped connection is seen
        before the dying process can be reaped)."""
        proc = self._proc
        if proc is None:
            return True
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _start(self) -> None:
        if self._log is not None:
            self._log.close()
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        self.port = _free_port()
        cmd = self.command(self.port)
        if self._spawner is None:  # one long-lived thread spawns the server: it dies with that thread
            self._spawner = ThreadPoolExecutor(1, thread_name_prefix="llama-server")
        self._proc = self._spawner.submit(subprocess.Popen, cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent).result()
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, self._proc, self._owner)
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self._proc.poll() is not None:
                raise LlamaServerError(f"llama-server exited with code {self._proc.returncode} while starting "
                                       f"({' '.join(cmd)}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                _stop(self._proc, self._owner)
                raise LlamaServerError(f"llama-server did not become healthy on port {self.port} within "
                                       f"{self.start_timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def ensure_running(self) -> None:
        """Start the server, or restart it if it died (at most ``max_restarts`` times over its life)."""
        with self._lock:
            if self.alive():
                return
            if self._proc is not None:
                code = self._proc.returncode
                if self.restarts >= self.max_restarts:
                    raise LlamaServerError(f"llama-server (pid {self._proc.pid}) exited with code {code}; it was "
                                           f"restarted {self.restarts} time(s) already (llm.server_restarts="
                                           f"{self.max_restarts}), giving up. Last log lines:\n{self.log_tail()}")
                self.restarts += 1
                logger.warning("llama-server (pid %s) exited with code %s; restarting it (%d/%d)",
                               self._proc.pid, code, self.restarts, self.max_restarts)
            self._start()

    def stop(self) -> None:
        with self._lock:
            _stop(self._proc, self._owner)
            if self._finalizer is not None:
                self._finalizer.detach()
            if self._log is not None:
                self._log.close()
                with contextlib.suppress(OSError):
                    os.unlink(self._log.name)
                self._log = None
            if self._spawner is not None:
                self._spawner.shutdown(wait=False)
                self._spawner = None

    def __enter__(self) -> "LlamaServer":
        self.ensure_running()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_DROPPED = (urllib.error.URLError, ConnectionError, http.client.HTTPException, TimeoutError)


class LlamaServerEngine(OpenAIEngine):
    """``llama-cpp``: a private llama-server with ``slots`` sequences decoded together; ``slots`` requests in
    flight through the OpenAI client; ``cache_prompt`` on; the OpenAI ``json_schema`` response format
    (llama-server turns the schema into a grammar per request)."""

    name = "llama-cpp"

    def __init__(self, server: LlamaServer, model: str, *, timeout: float):
        self.server = server
        server.ensure_running()
        super().__init__(server.base_url, model, concurrency=server.slots, timeout=timeout, response_format="json_schema")

    @classmethod
    def from_config(cls, cfg: LLMConfig, **context: Any):
        try:
            server = LlamaServer(cfg.model, binary=cfg.server_binary, slots=cfg.slots, n_ctx=cfg.n_ctx,
                                 n_threads=cfg.n_threads, cache_ram_mib=cfg.server_cache_ram_mib,
                                 start_timeout_s=cfg.server_start_timeout_s, max_restarts=cfg.server_restarts)
        except LlamaServerError as e:
            if cfg.server_binary or not cfg.server_fallback:
                raise
            from pipeline.backends.llm.llama_cpp import LlamaCppEngine

            logger.warning("%s; falling back to the in-process engine (llm.backend llama-cpp-inprocess, one sequence "
                           "at a time, about 3x slower); set llm.server_fallback: false to make this an error", e)
            return LlamaCppEngine.from_config(cfg)
        return cls(server, cfg.model, timeout=cfg.request_timeout_s)

    def _body(self, r) -> dict:
        body = super()._body(r)
        body["cache_prompt"] = True  # keep the slot's KV cache for the next request sharing the prefix
        return body

    def _post(self, body: dict) -> dict:
        for _ in range(self.server.max_restarts + 2):
            self.server.ensure_running()  # raises LlamaServerError once it may not restart any more
            self.base_url = self.server.base_url
            try:
                return super()._post(body)
            except urllib.error.HTTPError:
                raise
            except _DROPPED:
                if not self.server.died_within(2.0):
                    raise  # a network hiccup: the client's own retry handles it
                # the server died under this request: loop, restart it, send the request again
        self.server.ensure_running()
        raise LlamaServerError("llama-server keeps dying")  # pragma: no cover (ensure_running raises first)

    def close(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def local_llama_server(model: str, n_threads: int = 2, n_ctx: int = 2048, port: int | None = None,
                       timeout: float = 600.0):
    """Run ``python -m llama_cpp.server`` (``pip install 'llama-cpp-python[server]'``) on 127.0.0.1
    with a GGUF (``embedded:<name>`` or a path) and yield its OpenAI base URL (``.../v1``); the
    server is stopped on exit. The model is served under the name ``model``. Its log goes to a
    temporary file (a pipe would fill up and block the server). It serialises requests: use
    ``LlamaServer`` for concurrent decoding."""
    if port is None:
        port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", resolve(model), "--model_alias", model,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(n_threads)]
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"

        def tail() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-2000:]

        try:
            deadline = time.time() + timeout
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {p.returncode}: {tail()}")
                try:
                    with urllib.request.urlopen(f"{base}/models", timeout=2):
                        break
                except OSError:
                    if time.time() > deadline:
                        raise TimeoutError(f"llama_cpp.server did not answer on {base} within {timeout:.0f} s: {tail()}")
                    time.sleep(0.25)
            yield base
        finally:
            _stop(p, os.getpid(), wait_s=15)


__all__ = ["LlamaServer", "LlamaServerEngine", "LlamaServerError", "find_server_binary", "local_llama_server", "cached_binary"]
