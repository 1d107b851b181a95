"""`make serve` path: a real Prefect server on loopback, a process work pool, prefect.yaml
deployments, and a worker that runs the dataset deployment."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_and_run_dataset_through_server_and_worker(corpus, tmp_path):
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "PREFECT_HOME": str(tmp_path / "prefect"), "SERVE_NO_WORKER": "1",
           "PY": sys.executable, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "SPEECHINSTRUCT_ROOT": str(ROOT),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(["bash", "scripts/serve.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        log = []
        deadline = time.time() + 240
        while not any("run one with" in line for line in log):
            line = server.stdout.readline()
            assert line or server.poll() is None, "".join(log)
            log.append(line)
            assert time.time() < deadline, "".join(log)
        prefect = [sys.executable, "-m", "prefect"]
        ls = subprocess.run(prefect + ["deployment", "ls"], env=env, cwd=ROOT, capture_output=True, text=True)
        assert all(d in ls.stdout for d in ("dataset/dataset-en", "tts/tts-en", "train/train-en")), ls.stdout + ls.stderr
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(json.dumps({"path": str(corpus / "audio" / "s3.ogg")}) + "\n" + json.dumps({"path": str(corpus / "audio" / "notes.txt")}) + "\n")
        params = {"input": str(manifest), "output_dir": str(tmp_path / "out"), "report": False,
                  "overrides": {"tts.input": None, "llm.max_tokens": 60}}
        r = subprocess.run(prefect + ["deployment", "run", "dataset/dataset-en", "--params", json.dumps(params)],
                           env=env, cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        w = subprocess.run(prefect + ["worker", "start", "--pool", "speechinstruct-cpu", "--run-once"], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
        assert w.returncode == 0, w.stdout[-2000:] + w.stderr[-2000:]
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/api/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}, method="POST")) as resp:
            runs = json.loads(resp.read())
        states = {r["name"]: r["state_type"] for r in runs}
        assert runs and all(s == "COMPLETED" for s in states.values()), states
        out = tmp_path / "out" / "en"
        m = json.loads((out / "_manifest.json").read_text())
        assert m["tables"]["utterances"]["rows"] == 1 and m["reject_reasons"] == {"ingest:not_audio": 1} | {
            k: v for k, v in m["reject_reasons"].items() if k.startswith("llm:")}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
