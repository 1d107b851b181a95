"""A user's own corpus through the CLI: `--input` alone speaks nothing of the sample text corpus, and the card
and _manifest.json list every input (issue 21)."""
from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq

from pipeline.core.config import load_profile
from tests.conftest import ROOT, env_for_subprocess


def test_input_alone_uses_no_sample_texts(corpus, tmp_path):
    m = tmp_path / "my.jsonl"
    m.write_text("\n".join(json.dumps({"path": p}) for p in ["missing.wav", str(corpus / "audio" / "empty.wav")]) + "\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "pipeline", "dataset", "--lang", "en", "--input", str(m), "--output-dir", str(out),
                        "--no-prefect", "--no-report"], cwd=ROOT, capture_output=True, text=True, env=env_for_subprocess(),
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    sample_texts = load_profile("en").tts.input
    assert f"the profile's {sample_texts} is not used" in r.stderr  # said in the log
    d = out / "en"
    rows = json.loads(r.stdout.strip().splitlines()[-1])["rows"]
    assert rows == {"utterances": 0, "instructions": 0, "rejects": 2}
    assert not list((d / "instructions").glob("part-*.parquet"))  # no tts_instruction rows from the samples
    reasons = sorted(x for f in (d / "rejects").glob("part-*.parquet") for x in pq.read_table(f).column("reason").to_pylist())
    assert reasons == ["empty", "missing"]
    manifest = json.loads((d / "_manifest.json").read_text())
    assert manifest["inputs"] == [{"kind": "audio", "path": str(m), "files": 2},
                                  {"kind": "text instructions", "path": None, "records": 0, "rejected_when_read": 0}]
    card = (d / "README.md").read_text()
    assert f"- audio: `{m}` (2 files)" in card and "- text instructions: none" in card
    assert "samples/" not in card
