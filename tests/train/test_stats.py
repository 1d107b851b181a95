"""Pieces of the training benchmark that need no model: cluster-bootstrap intervals, early stopping, the
per-example loss average."""
from __future__ import annotations

import json

import numpy as np
import pytest


def _rows(n_groups: int, per_group: int, right_model, right_control, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for i in range(per_group):
            ref = "male" if (g + i) % 2 else "female"
            other = "female" if ref == "male" else "male"
            rows.append({"group": f"speaker:{g}", "reference": ref, "kind": "label",
                         "model": ref if rng.random() < right_model else other,
                         "no_audio": ref if rng.random() < right_control else other})
    return rows


def test_bootstrap_separates_a_real_difference_and_not_a_null_one():
    from pipeline.train.stats import bootstrap, separated

    ci = bootstrap("label", _rows(12, 7, 0.95, 0.5), ("model", "no_audio"), seed=1)
    assert ci["groups"] == 12 and ci["model"]["ci"][0] <= ci["model"]["score"] <= ci["model"]["ci"][1]
    assert separated(ci, "model", "no_audio", True) and not separated(ci, "no_audio", "model", True)
    same = bootstrap("label", _rows(12, 7, 0.6, 0.6, seed=3), ("model", "no_audio"), seed=1)
    assert not separated(same, "model", "no_audio", True)


def test_bootstrap_unit_is_the_speaker():
    """Same rows, fewer and larger groups: a wider interval (examples of one speaker are not independent)."""
    from pipeline.train.stats import bootstrap

    rows = _rows(24, 4, 0.7, 0.5, seed=5)
    width = lambda r: np.diff(bootstrap("label", r, ("model",), seed=2)["model"]["ci"])[0]
    lumped = [{**r, "group": f"speaker:{int(r['group'].split(':')[1]) // 6}"} for r in rows]  # 4 groups of 24
    assert width(lumped) > width(rows)


def test_bootstrap_wer_is_a_ratio_of_sums():
    from pipeline.train.stats import bootstrap

    rows = [{"group": "a", "reference": "one two three four", "model": "one two three four"},
            {"group": "b", "reference": "five six", "model": "five"}]
    ci = bootstrap("asr", rows, ("model",), n_boot=200)
    assert ci["model"]["score"] == pytest.approx(1 / 6, abs=1e-4)  # corpus WER, not the mean of 0 and 0.5
    assert ci["model"]["ci"][0] == 0.0 and ci["model"]["ci"][1] == pytest.approx(0.5, abs=1e-4)


def test_early_stopping_counts_checks_since_the_best(tmp_path):
    from pipeline.core.config import TrainConfig
    from pipeline.train.loop import stop_early

    log = tmp_path / "train_log.jsonl"
    recs = [{"step": 10, "loss": 1, "val_loss": 2.0}, {"step": 15, "loss": 1}, {"step": 20, "loss": 1, "val_loss": 1.5},
            {"step": 30, "loss": 1, "val_loss": 1.6}, {"step": 40, "loss": 1, "val_loss": 1.7}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    hist = {"best_step": 20, "best_val_loss": 1.5}
    assert stop_early(TrainConfig(early_stopping_patience=2), log, hist, 40)
    assert not stop_early(TrainConfig(early_stopping_patience=3), log, hist, 40)
    assert not stop_early(TrainConfig(early_stopping_patience=0), log, hist, 40)  # off


def test_loss_is_averaged_per_example():
    import torch

    from pipeline.train.model import mean_loss

    logits = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]]))
    targets = torch.tensor([0, 0, 0, 0])
    rows = torch.tensor([0, 0, 0, 1])  # example 0: three tokens at -log 0.5, example 1: one at -log 0.9
    per_example = mean_loss(torch, logits, targets, rows, 2, "example")
    per_token = mean_loss(torch, logits, targets, rows, 2, "token")
    assert float(per_example) == pytest.approx((np.log(2) + -np.log(0.9)) / 2, rel=1e-5)
    assert float(per_token) == pytest.approx((3 * np.log(2) - np.log(0.9)) / 4, rel=1e-5)


def test_encoder_window_holds_the_clip():
    from pipeline.train.encoders import window_frames

    assert window_frames(16000 * 5, None) == 3000  # Whisper's 30 s
    assert window_frames(16000 * 5, 10.0) == 1000  # 5 s + 1 s fits 10 s
    assert window_frames(16000 * 9.5, 10.0) == 2000  # 10.5 s: two windows' worth
    assert window_frames(16000 * 40, 10.0) == 3000  # never above 30 s
