"""pipeline.dataset.report: one self-contained HTML file from a small but realistic run directory."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.dataset.report import audio_mime, write_report

SR = 16000
XSS = "<script>alert(1)</script>"


def tone(fmt: str = "FLAC", seconds: float = 1.0, freq: float = 440.0) -> bytes:
    t = np.arange(int(SR * seconds)) / SR
    buf = io.BytesIO()
    subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format=fmt, subtype=subtype)
    return buf.getvalue()


def _write(dataset: Path, table: str, rows: list[dict], part: int = 0, schema: pa.Schema | None = None) -> None:
    d = dataset / table
    d.mkdir(parents=True, exist_ok=True)
    t = pa.Table.from_pylist(rows, schema=schema) if schema is not None else pa.Table.from_pylist(rows)
    pq.write_table(t, d / f"part-{part:05d}.parquet", row_group_size=2)


AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
UTT_SCHEMA = pa.schema([
    ("id", pa.string()), ("source_id", pa.string()), ("source_path", pa.string()), ("segment_index", pa.int32()),
    ("start_s", pa.float32()), ("end_s", pa.float32()), ("audio", AUDIO), ("sample_rate", pa.int32()),
    ("duration_s", pa.float32()), ("speech_ratio", pa.float32()), ("speaker", pa.string()),
    ("reference_text", pa.string()), ("labels_json", pa.string()), ("loudness_lufs", pa.float32()),
    ("snr_db", pa.float32()), ("snr_source", pa.string()), ("gender", pa.string()), ("gender_score", pa.float32()),
    ("asr_text", pa.string()), ("asr_language", pa.string()), ("asr_avg_logprob", pa.float32()),
    ("asr_segments_json", pa.string()), ("wer", pa.float32()),
    ("emotion", pa.string()),  # a column added by a later version: must be plotted without code changes
])
INS_SCHEMA = pa.schema([
    ("id", pa.string()), ("utterance_id", pa.string()), ("task", pa.string()), ("dataset", pa.string()),
    ("audio", AUDIO), ("seed_description", pa.string()), ("prompt", pa.string()), ("response", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("text_source", pa.string()), ("engine", pa.string()), ("model_id", pa.string()), ("seed", pa.int64()),
    ("judge_score", pa.float64()),  # later version
])
REJ_SCHEMA = pa.schema([
    ("id", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("detail", pa.string()),
    ("source_path", pa.string()), ("start_s", pa.float32()), ("end_s", pa.float32()), ("raw", pa.string()),
])


def make_dataset(root: Path, *, n_utt: int = 6, with_wer: bool = True, rejects: bool = True,
                 instructions: bool = True, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    flac = tone("FLAC")
    utts = []
    for i in range(n_utt):
        dur = float(rng.uniform(1.0, 12.0))
        text = XSS if i == 1 else f"the quick brown fox number {i} jumps over the lazy dog"
        utts.append({
            "id": f"src{i % 3}-{i:04d}", "source_id": f"src{i % 3}", "source_path": f"spk{i % 2}/file{i % 3}.wav",
            "segment_index": i, "start_s": 0.0, "end_s": dur, "audio": {"bytes": flac, "path": f"src{i % 3}-{i:04d}.flac"},
            "sample_rate": SR, "duration_s": dur, "speech_ratio": float(rng.uniform(0.5, 1.0)),
            "speaker": f"spk{i % 2}", "reference_text": (f"the quick brown fox number {i}" if with_wer else None),
            "labels_json": json.dumps({"split": "train"}), "loudness_lufs": float(rng.normal(-23, 3)),
            "snr_db": float(rng.normal(25, 6)), "snr_source": "wada",
            "gender": [None, "male", "female"][i % 3], "gender_score": float(rng.uniform(0.6, 1.0)),
            "asr_text": text, "asr_language": "en" if i % 4 else "de", "asr_avg_logprob": float(rng.uniform(-1, 0)),
            "asr_segments_json": json.dumps([{"start": 0, "end": dur, "text": text}]),
            "wer": float(rng.uniform(0, 0.6)) if with_wer else None,
            "emotion": ["neutral", "happy", "sad"][i % 3],
        })
    half = n_utt // 2
    _write(root, "utterances", utts[:half], 0, UTT_SCHEMA)
    _write(root, "utterances", utts[half:], 1, UTT_SCHEMA)

    ins = []
    if instructions:
        wav = tone("WAV", freq=660.0)
        for i, u in enumerate(utts):
            for task in ("description", "qa"):
                resp = " ".join(["word"] * int(rng.integers(5, 60)))
                ins.append({
                    "id": f"{u['id']}-{task}-0", "utterance_id": u["id"], "task": task, "dataset": "toy",
                    "audio": {"bytes": flac, "path": u["audio"]["path"]},
                    "seed_description": f"[00:00-00:01] {u['asr_text']} (Gender: {u['gender']})",
                    "prompt": "What is said in the audio?" if task == "qa" else "Describe the speaker.",
                    "response": resp + (" " + XSS if i == 1 else ""),
                    "messages": [{"role": "user", "content": "<|AUDIO|>"}, {"role": "assistant", "content": resp}],
                    "text_source": "reference" if i % 2 else "asr", "engine": "llama-cpp",
                    "model_id": "qwen2.5-0.5b-instruct-q4_k_m", "seed": i, "judge_score": float(rng.uniform(1, 5)),
                })
        ins.append({"id": "text-0001-tts_instruction-0", "utterance_id": None, "task": "tts_instruction",
                    "dataset": "alpaca", "audio": {"bytes": wav, "path": "tts-0001.wav"}, "prompt": "<|AUDIO|>",
                    "response": "Paris is the capital of France.", "messages": [], "text_source": "corpus",
                    "engine": "piper", "model_id": "en_US-lessac-medium", "seed": 0, "judge_score": None})
    _write(root, "instructions", ins, 0, INS_SCHEMA)

    if rejects:
        rej = [{"id": f"bad{i}", "stage": "ingest" if i < 3 else "llm",
                "reason": "corrupt" if i < 3 else "malformed_json",
                "detail": f"cannot decode bad{i}.wav" if i < 3 else "expected JSON object",
                "source_path": f"bad{i}.wav", "raw": "{not json" if i >= 3 else None} for i in range(5)]
        _write(root, "rejects", rej, 0, REJ_SCHEMA)

    # shaped like pipeline.dataset.export.write_manifest's output, plus an untrusted string
    (root / "_manifest.json").write_text(json.dumps({
        "name": "toy", "language": "en", "created": "2025-01-01T10:00:00+00:00", "profile_digest": "sha256:0123abcd",
        "audio_hours": 0.01, "models": {"asr": "faster-whisper:tiny", "llm": "llama-cpp:qwen2.5-0.5b"},
        "stage_seconds": {"ingest": 1.5, "asr": 12.25}, "reject_reasons": {"ingest:corrupt": 3},
        "tables": {t: {"rows": 1, "files": [{"path": f"{t}/part-00000.parquet", "rows": 1, "sha256": "ab" * 32}]}
                   for t in ("utterances", "instructions", "rejects")},
        "note": XSS,
    }))
    return root


def plot_ids(html: str) -> list[str]:
    return re.findall(r'<img class="plot-img" data-plot="([^"]+)"', html)


EXPECTED_PLOTS = {
    # utterances: duration, WER, then every numeric / low-cardinality column (incl. the new `emotion`)
    "utterances.duration_s", "utterances.wer", "utterances.sample_rate", "utterances.speech_ratio",
    "utterances.speaker", "utterances.loudness_lufs", "utterances.snr_db", "utterances.snr_source",
    "utterances.gender", "utterances.gender_score", "utterances.asr_language", "utterances.asr_avg_logprob",
    "utterances.emotion",
    # instructions: per-task counts and response lengths, then categorical / numeric extras
    "instructions.task", "instructions.response_words", "instructions.dataset", "instructions.text_source",
    "instructions.engine", "instructions.model_id", "instructions.judge_score",
    # rejects
    "rejects.stage_reason",
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "run")


def test_full_report(dataset: Path):
    out = write_report(dataset)
    assert out == dataset / "report.html" and out.is_file()
    html = out.read_text(encoding="utf-8")

    ids = plot_ids(html)
    assert len(ids) == len(set(ids)), "one <img> per plot"
    assert set(ids) == EXPECTED_PLOTS
    assert html.count("<img") == len(EXPECTED_PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]+)"', html))

    # audio players with the right mime types (FLAC utterances, WAV synthesized speech)
    assert '<audio controls preload="metadata" src="data:audio/flac;base64,' in html
    assert "data:audio/wav;base64," in html
    # reject reasons, by stage, and the rejects table
    for s in ("ingest:corrupt", "llm:malformed_json", "cannot decode bad0.wav", "expected JSON object"):
        assert s in html
    # header: row counts, manifest keys (nested flattened)
    assert "profile_digest" in html and "sha256:0123abcd" in html and "models.asr" in html
    assert "stage_seconds.asr" in html and "12.25" in html
    assert re.search(r"tables\.rejects\.files</td><td><details><summary>1 entry</summary>", html)
    assert ">12<" in html or ">13<" in html  # instruction row count (6 utts x 2 tasks + 1 tts)
    # untrusted text is escaped everywhere (transcript, response, manifest)
    assert XSS not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # self-contained: nothing fetched from the network
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_samples_mix_tasks_and_limit(dataset: Path, tmp_path: Path):
    out = write_report(dataset, tmp_path / "r" / "small.html", title="Toy <run>", max_samples=3)
    html = out.read_text(encoding="utf-8")
    assert "<title>Toy &lt;run&gt;</title>" in html
    assert html.count("<audio") == 6  # 3 instruction samples + 3 utterance samples
    inst = html.split('id="instruction-samples"')[1].split('id="utterance-samples"')[0]
    for task in ("description", "qa", "tts_instruction"):  # round-robin over the tasks
        assert f">{task}</span>" in inst


def test_missing_rejects_and_empty_table(tmp_path: Path):
    ds = make_dataset(tmp_path / "run", with_wer=False, rejects=False, instructions=False)
    (ds / "_manifest.json").unlink()
    html = write_report(ds).read_text(encoding="utf-8")
    ids = set(plot_ids(html))
    assert "utterances.duration_s" in ids and "utterances.gender" in ids
    assert "utterances.wer" not in ids  # all null -> no plot, but a note
    assert re.search(r"<b>all null</b>: [^<]*wer \(no reference transcripts\)", html)
    assert not any(i.startswith(("instructions.", "rejects.")) for i in ids)
    assert "No rejects table in this run." in html
    assert "No instruction rows." in html
    assert "No _manifest.json" in html
    assert "data:audio/flac;base64," in html


def test_empty_directory(tmp_path: Path):
    (tmp_path / "run").mkdir()
    html = write_report(tmp_path / "run").read_text(encoding="utf-8")
    assert "<img" not in html and "<audio" not in html
    assert "No utterance rows." in html


def test_audio_only_read_for_samples(dataset: Path, monkeypatch):
    """Plots read scalar columns only; audio is read row-group-wise for the sampled rows."""
    from pipeline.dataset.report import tables

    read_cols: list[list[str]] = []
    real = pq.read_table

    def spy(path, *a, columns=None, **kw):
        read_cols.append(list(columns or []))
        return real(path, *a, columns=columns, **kw)

    monkeypatch.setattr(tables.pq, "read_table", spy)
    write_report(dataset, max_samples=2)
    assert read_cols and all(c is not None and "audio" not in c and "messages" not in c for c in read_cols)


@pytest.mark.parametrize("fmt,mime", [("FLAC", "audio/flac"), ("WAV", "audio/wav"), ("OGG", "audio/ogg")])
def test_audio_mime_real_bytes(fmt: str, mime: str):
    assert audio_mime(tone(fmt, seconds=0.1)) == mime


def test_audio_mime_magic():
    assert audio_mime(b"ID3\x04\x00" + b"\x00" * 20) == "audio/mpeg"
    assert audio_mime(b"\xff\xfb\x90\x64" + b"\x00" * 20) == "audio/mpeg"
    assert audio_mime(b"RIFF\x00\x00\x00\x00AVI LIST") is None
    assert audio_mime(b"") is None and audio_mime(None) is None


def test_take_rows_across_files_and_row_groups(dataset: Path):
    from pipeline.dataset.report.tables import _open_table, _take_rows

    t = _open_table(dataset, "utterances", [])
    assert len(t.files) == 2 and t.rows == 6
    rows = _take_rows(t, [5, 0, 3, 2], ["id", "audio", "not_a_column"])
    assert [r["id"] for r in rows] == ["src2-0005", "src0-0000", "src0-0003", "src2-0002"]
    assert all(r["audio"]["bytes"][:4] == b"fLaC" and r["not_a_column"] is None for r in rows)
