"""A local ``python -m llama_cpp.server`` for the openai engine (tests and benchmarks)."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from pipeline.core.model_cache import resolve


@contextlib.contextmanager
def local_llama_server(model: str, n_threads: int = 2, n_ctx: int = 2048, port: int | None = None,
                       timeout: float = 600.0):
    """Run ``python -m llama_cpp.server`` (``pip install 'llama-cpp-python[server]'``) on 127.0.0.1
    with a GGUF (``embedded:<name>`` or a path) and yield its OpenAI base URL (``.../v1``); the
    server is stopped on exit. The model is served under the name ``model``. Its log goes to a
    temporary file (a pipe would fill up and block the server)."""
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
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
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
