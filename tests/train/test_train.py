"""Speech-LM training (pipeline/train/) on a small real dataset built with the project's own stages.

The dataset: six espeak-ng clips of six speakers (3 male, 3 female voices, manifest labels) run through
ingest -> metadata -> asr, and three text instructions spoken by the TTS stage (espeak-ng backend). The
LLM stage is skipped (an empty stage part per shard) to keep the module near a minute and a half on
2 cores; the description/qa rows are exercised by `make train LANG=en` on the sample corpus.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see pipeline/train/__init__.py (only effective before torch loads)

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import espeak

SPEAKERS = [  # (espeak voice, gender, sentence)
    ("en-us", "male", "The library opens at nine and closes at five on weekdays."),
    ("en-us+f3", "female", "Please bring a warm jacket because the trail gets cold at night."),
    ("en-gb", "male", "Our train to the coast leaves from platform four in twenty minutes."),
    ("en-us+f4", "female", "She planted tomatoes, beans and sunflowers in the garden last spring."),
    ("en-us+m3", "male", "The bakery on the corner sells fresh bread every morning."),
    ("en-gb+f2", "female", "We watched the boats sail past the harbour wall at sunset."),
]
TEXTS = [
    {"instruction": "Name three colours of the rainbow.", "input": "", "output": "Red, orange and yellow."},
    {"instruction": "Give me one tip for sleeping better.", "input": "", "output": "Keep a regular bedtime."},
    {"instruction": "Say a word that rhymes with cat.", "input": "", "output": "Hat rhymes with cat."},
]
TRAIN = {  # tiny run: full-batch steps (the train split is < 16 examples) at a small lr, short outputs
    "train.max_steps": 2, "train.checkpoint_every": 2, "train.batch_size": 16, "train.lr": 3e-5, "train.warmup_steps": 1,
    "train.tasks": ["asr", "labels", "tts_instruction"], "train.max_new_tokens": 4, "train.max_eval_examples": 1,
    "train.val_fraction": 0.2, "train.test_fraction": 0.3,
}


def table(d: Path, name: str) -> list[dict]:
    files = sorted((d / name).glob("part-*.parquet"))
    return pq.ParquetDataset(files).read(columns=None).to_pylist() if files else []


def build_corpus(tmp_path_factory, asr: bool = True):
    """(profile, out): six espeak-ng speakers through ingest -> metadata -> asr (or passed through when
    ``asr`` is False: the manifest gives the references) and three TTS instructions, exported."""
    from pipeline.core.config import load_profile
    from pipeline.dataset.export import export
    from pipeline.run.runner import Run, run_stage

    d = tmp_path_factory.mktemp("train_corpus")
    rows = []
    for i, (voice, gender, text) in enumerate(SPEAKERS):
        espeak(text, voice, d / f"u{i}.wav", speed=165)
        rows.append({"path": f"u{i}.wav", "text": text, "speaker": f"espeak-{voice}", "labels": {"gender": gender}})
    (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "texts.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TEXTS))
    out = tmp_path_factory.mktemp("train_out")
    profile = load_profile("en", input=str(d / "manifest.jsonl"), **{
        "shard_size": 3, "tts.input": str(d / "texts.jsonl"), "tts.backend": "espeak-ng", "tts.voices": ["en-us"],
        "tts.length_scales": [1.0], "tts.gate_max_wer": None, **TRAIN})
    run = Run(profile, out)
    for stage in ("ingest", "metadata"):
        run_stage(run, stage, progress=False)
    if asr:
        run_stage(run, "asr", progress=False)
    else:
        for k in run.shard_ids("asr"):
            run.write_shard("asr", k, run.input_rows("asr", k), [])
    run_stage(run, "tts", progress=False)
    for k in run.shard_ids("llm"):  # LLM stage skipped: no description/qa rows
        run.write_shard("llm", k, [], [])
    export(run)
    assert len(table(out / "en", "utterances")) == len(SPEAKERS)
    assert len(table(out / "en", "instructions")) == len(TEXTS)
    return profile, out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_corpus(tmp_path_factory)


def train_run(dataset, **overrides):
    from pipeline.core.config import load_profile
    from pipeline.train.run import TrainRun

    profile, out = dataset
    p = load_profile("en", input=profile.input, **{"tts.input": profile.tts.input, **TRAIN, **overrides})
    return TrainRun(p, out)


@pytest.fixture(scope="module")
def prepared(dataset):
    from pipeline.train.run import compute_features, prepare

    tr = train_run(dataset)
    summary = prepare(tr)
    compute_features(tr)
    return tr, summary


def test_split_is_by_speaker_and_text_never_by_row(prepared):
    tr, summary = prepared
    split = json.loads((tr.dir / "split.json").read_text())
    assert split["overlap"] == {"group": [], "audio": []}
    assert all(summary[s] > 0 for s in ("train", "val", "test")), summary
    utts = {u["id"]: u for u in table(tr.data_dir, "utterances")}
    speakers, sources, texts = {}, {}, {}
    for e in tr.examples():
        uid = next((u for u in utts if e.id.startswith(u + "-")), None)
        if uid:
            speakers.setdefault(utts[uid]["speaker"], set()).add(e.split)
            sources.setdefault(utts[uid]["source_id"], set()).add(e.split)
        else:
            assert e.group.startswith("text:") and e.task in ("tts_instruction", "asr")
            texts.setdefault(e.group, set()).add(e.split)
    assert len(speakers) == len(SPEAKERS) and len(texts) == len(TEXTS)
    for kind, m in (("speaker", speakers), ("source", sources), ("text", texts)):
        assert all(len(s) == 1 for s in m.values()), (kind, m)
    test_speakers = {k for k, s in speakers.items() if "test" in s}
    train_speakers = {k for k, s in speakers.items() if "train" in s}
    assert test_speakers and train_speakers and not test_speakers & train_speakers
    # derived tasks: ASR from the reference transcripts, gender from the manifest labels
    tasks = {e.task for e in tr.examples()}
    assert {"asr", "label:gender", "tts_instruction"} <= tasks
    g = [e for e in tr.examples() if e.task == "label:gender"]
    assert all(e.meta["label_source"] == "labels.gender" and e.choices == ["male", "female"] for e in g)


def test_split_by_source_and_determinism(prepared):
    from pipeline.train.data import build_examples, split_groups

    tr, _ = prepared
    ex = tr.examples()
    a, b = split_groups(ex, tr.cfg), split_groups(list(reversed(ex)), tr.cfg)
    assert a == b  # order of the rows does not matter, only the seed
    cfg = tr.cfg.model_copy(update={"split_by": "source"})
    ex2, _ = build_examples(tr.data_dir, cfg)
    assert all(e.group.startswith(("source:", "text:")) for e in ex2)


def test_features_are_cached_encoder_outputs(prepared):
    from pipeline.train.run import compute_features

    tr, _ = prepared
    assert compute_features(tr)["computed"] == 0  # second call: everything cached
    e = next(e for e in tr.examples() if e.task == "asr")
    f = np.load(tr.feature_path(e.audio_key))
    assert f.shape[1] == 512 and 50 <= f.shape[0] <= 1500  # Whisper base: 512-d frames at 50 Hz, trimmed to the clip


def test_training_reduces_loss_and_resumes(prepared):
    from safetensors.torch import load_file

    from pipeline.train.loop import fit

    tr, _ = prepared
    r1 = fit(tr)
    assert r1["step"] == 2 and r1["resumed_from"] is None and r1["steps_run"] == 2
    assert r1["final_probe_loss"] < r1["initial_probe_loss"], r1  # probe = the whole (small) train split
    ck = tr.last_checkpoint()
    assert ck.name == "step-000002" and (tr.ckpt_dir / "best" / "adapter.safetensors").exists()
    weights = load_file(str(ck / "adapter.safetensors"))
    assert weights and all(k.startswith("adapter.") for k in weights)  # trainable weights only, no LLM/encoder
    assert sum(v.numel() for v in weights.values()) == r1["trainable_params"] < 10_000_000
    # resume: same run, more steps -> continues at step 3 from the step-2 weights and optimizer state
    tr2 = train_run(tr_dataset(tr), **{"train.max_steps": 3})
    r2 = fit(tr2)
    assert r2["resumed_from"] == 2 and r2["steps_run"] == 1 and r2["step"] == 3
    assert [c.name for c in tr2.checkpoints()] == ["step-000002", "step-000003"]
    log = [json.loads(x) for x in (tr.dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert log[2]["loss"] < log[0]["loss"]
    assert r2["initial_probe_loss"] == r1["initial_probe_loss"]  # history carried over in the checkpoint
    assert fit(tr2)["steps_run"] == 0  # already done


def tr_dataset(tr):
    return tr.profile, tr.dir.parent.parent


def test_metrics_have_baselines_and_model(prepared):
    from pipeline.train.evaluate import evaluate
    from pipeline.train.loop import fit
    from pipeline.train.report import write_report

    tr, _ = prepared
    if tr.last_checkpoint() is None:
        fit(tr)
    m = evaluate(train_run(tr_dataset(tr), **{"train.max_steps": 3}))
    saved = json.loads((tr.dir / "metrics.json").read_text())
    assert saved["tasks"] == m["tasks"]
    assert m["tasks"]["asr"]["metric"] == "wer" and m["tasks"]["label:gender"]["metric"] == "accuracy"
    for task, e in m["tasks"].items():
        assert set(e["scores"]) == {"no_audio", "asr_text", "model", "model_shuffled_audio"}, task
        assert all(v == v for v in e["scores"].values())  # no NaN
        assert {s: e["ci"][s]["score"] for s in e["scores"]} == e["scores"], task  # the intervals are of these scores
        assert all(e["ci"][s]["ci"][0] <= e["scores"][s] <= e["ci"][s]["ci"][1] for s in e["scores"]), task
    assert isinstance(m["label_tasks_beat_no_audio"], bool)
    report = write_report(train_run(tr_dataset(tr)))
    text = report.read_text()
    assert "no_audio" in text and "asr_text" in text and "GRASS" in text and (tr.dir / "loss.png").exists()
    preds = [json.loads(x) for x in (tr.dir / "predictions.jsonl").read_text().splitlines()]
    assert preds and all(p["id"] in {e.id for e in tr.split("test")} for p in preds)


def test_hf_whisper_encoder_code_path():
    """The production encoder path (transformers WhisperModel) on a tiny random config: shapes and trimming."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    from pipeline.train.encoders import HFWhisperEncoder

    cfg = WhisperConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=80, max_source_positions=1500)
    enc = HFWhisperEncoder(model=WhisperModel(cfg).get_encoder(), feature_extractor=WhisperFeatureExtractor(feature_size=80))
    out = enc.encode([np.zeros(16000, np.float32), np.zeros(8000, np.float32)])
    assert [o.shape for o in out] == [(50, 32), (25, 32)]


def test_flow_is_wired():
    from flows.train import train

    assert train.name == "train"


def test_free_answers_map_to_label_classes():
    """Label instruction rows (e.g. the tasks stage's gender rows) are scored by the class their answer names."""
    from pipeline.core.config import TrainConfig
    from pipeline.train.data import answer_class

    lt = TrainConfig().label_tasks[0]
    assert lt.name == "gender"
    got = [answer_class(t, lt.choices, lt.synonyms) for t in
           ["It is a woman's voice.", "The speaker is male.", "Female.", "The voice belongs to a man.", "Hard to say."]]
    assert got == ["female", "male", "female", "male", None]
