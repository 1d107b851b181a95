"""GRASS variant (pipeline/train/grass/): fine-tune a Whisper decoder on the shards' spoken instructions.

No PyTorch Whisper weights can be downloaded here, so the model is a tiny random-weight
WhisperForConditionalGeneration saved into a temporary directory with a real Whisper tokenizer (built
offline from the BPE ranks bundled with openai-whisper) and feature extractor; the code path is the one a
hub model (``openai/whisper-small`` ...) takes. The dataset is the one of tests/train/test_train.py (espeak-ng
clips of six speakers with gender labels + three TTS instructions, through the project's stages), made
lighter: the ASR stage is passed through (GRASS needs no ASR transcript).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see pipeline/train/__init__.py (only effective before torch loads)

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from tests.train.test_train import SPEAKERS, TEXTS, TRAIN, build_corpus

GRASS = {"lr": 1e-3, "max_steps": 4, "checkpoint_every": 2}  # tiny random decoder: a high lr shows learning in 4 steps


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from pipeline.train.grass.tokenizer import whisper_tokenizer_from_openai

    tok = whisper_tokenizer_from_openai()
    cfg = WhisperConfig(vocab_size=len(tok), d_model=64, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
                        pad_token_id=50257, bos_token_id=50257, eos_token_id=50257)
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_whisper")
    WhisperForConditionalGeneration(cfg).save_pretrained(d)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """<out>/en with utterances/ and instructions/ shards (tests/train/test_train.py's corpus, ASR passed through)."""
    return build_corpus(tmp_path_factory, asr=False)[1] / "en"


def profile():
    from pipeline.core.config import load_profile

    return load_profile("en", **TRAIN)


def grass_run(out: Path, data: Path, whisper: Path, **overrides):
    from pipeline.train.grass.run import GrassRun

    return GrassRun(profile(), out, data, whisper=str(whisper), **{**GRASS, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data, whisper_dir):
    """An uninterrupted 4-step run (prepare -> features -> fit)."""
    from pipeline.train.grass.loop import fit
    from pipeline.train.grass.run import compute_features, prepare

    gr = grass_run(tmp_path_factory.mktemp("grass_a"), data, whisper_dir)
    summary = prepare(gr)
    features = compute_features(gr)
    return gr, summary, features, fit(gr)


def test_offline_tokenizer_is_whisper_s(whisper_dir):
    """The tokenizer saved with the tiny model gives openai-whisper's ids (text, special tokens, prompt)."""
    import whisper.tokenizer as wt
    from transformers import WhisperTokenizer

    ours = WhisperTokenizer.from_pretrained(whisper_dir)
    ref = wt.get_tokenizer(True, language="en", task="transcribe")
    for text in [" The library opens at nine.", "Is the speaker male or female? Answer with one word.", "Über l'été, 2024!"]:
        assert ours(text, add_special_tokens=False).input_ids == ref.encode(text)
    ours.set_prefix_tokens(language="en", task="transcribe")
    assert ours.prefix_tokens == list(ref.sot_sequence_including_notimestamps)
    assert ours.convert_tokens_to_ids("<|startofprev|>") == ref.sot_prev and ours.eos_token_id == ref.eot


def test_split_is_the_desta_split(trained, data):
    from pipeline.train.common import SPLITS
    from pipeline.train.run import TrainRun

    gr, summary, features, _ = trained
    assert all(summary[s] > 0 for s in SPLITS), summary
    split = json.loads((gr.dir / "split.json").read_text())
    assert gr.dir.name == "grass" and gr.dir.parent.name == "train"
    assert split["overlap"] == {"group": [], "audio": []}
    desta = TrainRun(profile(), gr.dir.parent.parent.parent, data)
    assert split["examples"] == {e.id: e.split for e in desta.examples()}  # same examples, same speaker/text split
    assert {e.task for e in gr.examples()} >= {"asr", "label:gender", "tts_instruction"}
    # the frozen encoder's outputs: one cached [1500, d_model] array per clip
    assert features["computed"] == features["clips"] == len(SPEAKERS) + len(TEXTS)
    f = sorted(gr.features_dir.glob("*.npy"))
    assert len(f) == features["clips"] and np.load(f[0]).shape == (1500, 64)


def test_decoder_sequence_has_prompt_then_response(trained):
    gr, *_ = trained
    m = gr.model()
    tok = m.tok
    e = next(e for e in gr.examples() if e.task == "label:gender")
    inputs, labels = m.sequence(e.user, e.response)
    full = inputs + [labels[-1]]
    sot = full.index(m.sot)
    assert full[0] == tok.convert_tokens_to_ids("<|startofprev|>")
    assert tok.decode(full[1:sot]).strip() == "Is the speaker male or female? Answer with one word."
    assert tok.convert_ids_to_tokens(full[sot:sot + 4]) == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    assert tok.decode(full[sot + 4:-1]).strip() == e.response and full[-1] == m.eot
    scored = [y for y in labels if y != -100]  # loss on the response and <|endoftext|> only
    assert scored == full[sot + 4:] and len(labels) == len(inputs)


def test_fit_learns_and_resume_matches_uninterrupted_run(trained, tmp_path, data, whisper_dir):
    import torch
    from safetensors.torch import load_file

    from pipeline.train.grass.loop import fit

    gr, _, _, r = trained
    assert r["step"] == 4 and r["steps_run"] == 4 and r["resumed_from"] is None
    log = [json.loads(x) for x in (gr.dir / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log] == [1, 2, 3, 4]
    assert all(x["tasks"] == log[0]["tasks"] for x in log)  # full batch: the same examples every step
    assert log[-1]["loss"] < log[0]["loss"] and r["final_probe_loss"] < r["initial_probe_loss"], (log, r)
    ck = gr.last_checkpoint()
    weights = load_file(str(ck / "decoder.safetensors"))
    assert all(k.startswith("decoder.") for k in weights)  # decoder only: the encoder stays frozen, never saved
    assert sum(v.numel() for v in weights.values()) == r["trainable_params"]
    assert not any(p.requires_grad for p in gr.model().encoder.parameters())
    # interrupted after step 2, then resumed: same losses and weights as the uninterrupted run
    out = tmp_path / "grass_b"
    r1 = fit(grass_run(out, data, whisper_dir), steps=2)
    assert r1["step"] == 2 and r1["steps_run"] == 2
    gb = grass_run(out, data, whisper_dir)
    r2 = fit(gb)
    assert r2["resumed_from"] == 2 and r2["steps_run"] == 2 and r2["step"] == 4
    log_b = [json.loads(x) for x in (gb.dir / "train_log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in log_b] == [x["loss"] for x in log]
    assert r2["initial_probe_loss"] == r["initial_probe_loss"] and r2["final_probe_loss"] == pytest.approx(r["final_probe_loss"], abs=1e-6)
    wb = load_file(str(gb.last_checkpoint() / "decoder.safetensors"))
    assert all(torch.allclose(weights[k], wb[k], atol=1e-6) for k in weights)
    assert fit(gb)["steps_run"] == 0  # already done
    with pytest.raises(Exception, match="another Whisper"):  # a checkpoint of another prompt format is not resumed
        fit(grass_run(out, data, whisper_dir, use_prompt=False))


def test_evaluate_scores_and_reports(trained, data):
    from pipeline.train.common import SPLITS, write_json
    from pipeline.train.evaluate import SYSTEMS as DESTA_SYSTEMS
    from pipeline.train.grass.config import SYSTEMS
    from pipeline.train.grass.entry import run_grass
    from pipeline.train.grass.evaluate import evaluate
    from pipeline.train.grass.report import write_report
    from pipeline.train.report import write_report as write_desta_report
    from pipeline.train.run import TrainRun

    gr, *_ = trained
    m = evaluate(gr)
    assert json.loads((gr.dir / "metrics.json").read_text())["tasks"] == m["tasks"]
    kinds = {t: e["metric"] for t, e in m["tasks"].items()}
    assert kinds == {"asr": "wer", "label:gender": "accuracy", "tts_instruction": "rougeL_f1"}
    for task, e in m["tasks"].items():
        assert set(e["scores"]) == set(SYSTEMS) and all(v == v for v in e["scores"].values()), task  # no NaN
    preds = [json.loads(x) for x in (gr.dir / "predictions.jsonl").read_text().splitlines()]
    test_ids = {e.id for e in gr.split("test")}
    assert preds and all(p["id"] in test_ids and all(isinstance(p[s], str) for s in SYSTEMS) for p in preds)
    label = next(p for p in preds if p["kind"] == "label")
    assert label["model"] in ("male", "female") and len(label["model_scores"]) == 2
    assert m["step"] == 4 and m["split"] == {s: len(gr.split(s)) for s in SPLITS}
    report = write_report(gr).read_text()
    assert "| asr | wer" in report and "model_shuffled_audio" in report and (gr.dir / "loss.png").exists()
    # the DeSTA report (minimal DeSTA outputs next to it) includes the GRASS scores and links the GRASS report
    tr = TrainRun(profile(), gr.dir.parent.parent.parent, data)
    (tr.dir / "split.json").write_text((gr.dir / "split.json").read_text())
    (tr.dir / "train_log.jsonl").write_text("")
    (tr.dir / "predictions.jsonl").write_text("")
    write_json(tr.dir / "metrics.json", {
        "language": "en", "data_dir": str(data), "checkpoint": "checkpoints/best", "step": 2, "trained_steps": 2,
        "config": {"encoder": "e", "llm": "l", "adapter": "mlp", "lora_rank": 0, "batch_size": 16, "lr": 1e-4,
                   "device": "cpu", "dtype": "float32", "decoding": "greedy"},
        "training": {"trainable_params": 1}, "timings_s": {}, "label_tasks_beat_no_audio": None, "label_task_failures": [],
        "systems": {}, "tasks": {"asr": {"metric": "wer", "higher_is_better": False, "n": 1, "scores": dict.fromkeys(DESTA_SYSTEMS, 0.5),
                                          "model_beats_no_audio": True, "model_uses_audio": True}}})
    text = write_desta_report(tr).read_text()
    assert "## GRASS variant" in text and "grass/report.md" in text and "desta_model" in text
    assert "| asr | wer ↓ | 1 | " in text and "left undone" not in text
    (tr.dir / "report.md").unlink()
    out = run_grass(profile(), gr.dir.parent.parent.parent, data, whisper=gr.grass.whisper, **GRASS)  # all done: rescored only
    assert out["fit"]["steps_run"] == 0 and out["desta_report"] == str(tr.dir / "report.md")
    assert "## GRASS variant" in (tr.dir / "report.md").read_text()


def test_cli_variant_grass(tmp_path, data, whisper_dir):
    sets = [f"{k.removeprefix('train.')}={json.dumps(v)}" for k, v in TRAIN.items()]
    args = ["--lang", "en", "--no-prefect", "--variant", "grass", "--whisper", str(whisper_dir), "--output-dir", str(tmp_path),
            "--data-dir", str(data), "--set", "grass.max_steps=1", "--set", "grass.lr=0.001"]
    for s in sets:
        args += ["--set", s]
    from pipeline.cli import train_main

    assert train_main(args) == 0
    m = json.loads((tmp_path / "en" / "train" / "grass" / "metrics.json").read_text())
    assert m["variant"] == "grass" and m["trained_steps"] == 1 and m["config"]["lr"] == 0.001
    assert m["config"]["whisper"] == str(whisper_dir)
    with pytest.raises(SystemExit):
        __import__("pipeline.cli").cli.train_main(["--lang", "en", "--set", "grass.lr=1"])  # GRASS settings without --variant grass


def test_flow_has_grass_variant(tmp_path, data, whisper_dir):
    from flows.train import grass_prepare_task, grass_task, train

    params = inspect.signature(train.fn).parameters
    assert {"variant", "whisper", "grass"} <= set(params) and params["variant"].default == "desta"
    args = ("en", str(tmp_path), str(data), TRAIN)  # the tasks' bodies (the flow itself needs a Prefect server)
    assert grass_prepare_task.fn(*args, True, str(whisper_dir), {"max_steps": 1})["test"] > 0
    out = grass_task.fn(*args, str(whisper_dir), {"max_steps": 1})
    assert out["fit"]["step"] == 1 and set(out["tasks"]) == {"asr", "label:gender", "tts_instruction"}
