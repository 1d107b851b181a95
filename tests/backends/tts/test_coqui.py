"""Coqui TTS backend on locally built models (no Coqui weights ship in a registry package, and nothing here may
download from the hub): small VITS models are constructed from a Coqui ``VitsConfig`` with random weights, saved as
checkpoint + config.json the way the Coqui trainer does, and loaded through ``CoquiBackend`` / ``load_tts`` exactly
as a local production model is (``TTS.api.TTS(model_path=..., config_path=...)``). The audio is noise-like (random
weights), so these tests check the loading / speaker / tokenizer / length-scale / error code paths, not speech.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

TTS = pytest.importorskip("TTS", reason="coqui-tts is not installed (pip install coqui-tts==0.28.0)")

from pipeline.backends.tts import load_tts  # noqa: E402
from pipeline.backends.tts.base import TTSBackend, TTSError  # noqa: E402
from pipeline.backends.tts.coqui import CoquiBackend, coqui_local_model  # noqa: E402
from pipeline.backends.tts.coqui_testing import coqui_random_vits  # noqa: E402
from pipeline.core.config import TTSConfig  # noqa: E402

FOX = "The quick brown fox jumps over the lazy dog."
SPEAKERS = ["alice", "bob", "carol"]
SR = 16000


def build_vits(out, speakers: list[str], phonemes: bool = False):
    """A tiny VITS (~0.26 M parameters, random weights) as model.pth + config.json in ``out``."""
    return coqui_random_vits(out, speakers, phonemes=phonemes, size="tiny", sample_rate=SR)


@pytest.fixture(scope="module")
def vits_dir(tmp_path_factory):
    return build_vits(tmp_path_factory.mktemp("coqui") / "vits-ms", SPEAKERS)


@pytest.fixture(scope="module")
def coqui(vits_dir) -> CoquiBackend:
    return CoquiBackend(str(vits_dir))


def _check(audio: np.ndarray, sr: int):
    assert sr == SR
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0 and np.max(np.abs(audio)) > 1e-3
    assert 0.2 < audio.size / sr < 30


def test_local_multispeaker_model_synthesises(coqui):
    assert isinstance(coqui, TTSBackend) and coqui.local and coqui.language is None
    assert coqui.voices() == SPEAKERS and coqui.sample_rate() == SR
    assert type(coqui.tts.synthesizer.tts_model).__name__ == "Vits"
    bob, sr = coqui.synthesize(FOX, "bob")
    _check(bob, sr)
    again, _ = coqui.synthesize(FOX, "bob")
    assert np.array_equal(bob, again)  # sampling noise seeded from (seed, text, voice, length_scale)
    carol, _ = coqui.synthesize(FOX, "carol")
    n = min(bob.size, carol.size)
    assert not np.allclose(bob[:n], carol[:n], atol=1e-4)  # another row of the speaker embedding table
    default, _ = coqui.synthesize(FOX)  # no voice: the first speaker
    assert np.array_equal(default, coqui.synthesize(FOX, "alice")[0])


def test_length_scale_reaches_the_model(coqui):
    slow, _ = coqui.synthesize(FOX, "alice", length_scale=1.5)
    fast, _ = coqui.synthesize(FOX, "alice", length_scale=0.75)
    assert slow.size > 1.6 * fast.size, (slow.size, fast.size)
    assert coqui.tts.synthesizer.tts_model.length_scale == 1.0  # restored after the call


def test_load_tts_with_a_local_checkpoint(vits_dir):
    cfg = TTSConfig(backend="coqui", coqui_model=str(vits_dir / "model.pth"), voices=["carol", "alice"])
    b = load_tts(cfg, "en")  # "en" is ignored: the model is not multilingual
    assert b.name == "coqui" and b.voices() == ["carol", "alice"] and b.language is None
    _check(*b.synthesize("Hello there, how are you?", "carol"))
    with pytest.raises(TTSError, match="unknown voice 'bob'"):
        b.synthesize(FOX, "bob")  # a model speaker that the config did not select


def test_single_speaker_phoneme_model(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    d = build_vits(tmp_path / "vits-ph", [], phonemes=True)
    b = CoquiBackend(str(d))
    assert b.voices() == ["default"] and not b.multi_speaker
    assert b.tts.synthesizer.tts_model.tokenizer.use_phonemes
    _check(*b.synthesize(FOX))
    _check(*b.synthesize(FOX, "default"))
    with pytest.raises(TTSError, match="single-speaker"):
        b.synthesize(FOX, "bob")
    with pytest.raises(TTSError, match="single-speaker"):
        CoquiBackend(str(d), speakers=["bob"])


def test_errors(coqui, vits_dir, tmp_path):
    with pytest.raises(TTSError, match="unknown voice"):
        coqui.synthesize(FOX, "dave")
    for bad in ["", "   ", "?!", None]:
        with pytest.raises(TTSError, match="nothing to synthesise"):
            coqui.synthesize(bad, "bob")
    with pytest.raises(TTSError, match="vocabulary"):
        coqui.synthesize("日本語のテキストです。", "bob")  # every character unknown to an English char model
    with pytest.raises(TTSError, match="length_scale"):
        coqui.synthesize(FOX, "bob", length_scale=0)
    with pytest.raises(TTSError, match="has no speaker"):
        CoquiBackend(str(vits_dir), speakers=["alice", "nobody"])
    with pytest.raises(TTSError, match="does not exist"):
        CoquiBackend(str(tmp_path / "missing" / "model.pth"))  # never sent to the hub as a model name
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TTSError, match="no config.json"):
        CoquiBackend(str(empty))
    shutil.copy(vits_dir / "config.json", empty / "config.json")
    with pytest.raises(TTSError, match="no checkpoint"):
        CoquiBackend(str(empty))
    (empty / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(TTSError, match="cannot load model"):
        CoquiBackend(str(empty))


def test_local_model_resolution(vits_dir, tmp_path):
    assert coqui_local_model("tts_models/multilingual/multi-dataset/xtts_v2") is None  # hub name: left to Coqui
    assert coqui_local_model(str(vits_dir)) == (str(vits_dir / "model.pth"), str(vits_dir / "config.json"))
    trainer = tmp_path / "run"
    trainer.mkdir()
    (trainer / "config.json").write_text(json.dumps({"model": "vits"}))
    for step in (900, 10000, 2000):
        (trainer / f"checkpoint_{step}.pth").write_bytes(b"")
    assert coqui_local_model(str(trainer))[0] == str(trainer / "checkpoint_10000.pth")  # the last step
    xtts = tmp_path / "xtts"
    xtts.mkdir()
    (xtts / "config.json").write_text(json.dumps({"model": "xtts"}))
    assert coqui_local_model(str(xtts)) == (str(xtts), str(xtts / "config.json"))  # XTTS loads its directory
    with pytest.raises(TTSError, match="is a config"):
        coqui_local_model(str(vits_dir / "config.json"))
