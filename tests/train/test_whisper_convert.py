"""The embedded Whisper base (CTranslate2, float16) converted to transformers matches CTranslate2 itself: same
encoder output (to float16 rounding) and the same greedy tokens on sample clips."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ct2_dir():
    from pipeline.core.model_cache import resolve

    try:
        d = Path(resolve("embedded:whisper-base-ct2"))
    except Exception as e:  # pragma: no cover - models not set up
        pytest.skip(f"embedded Whisper base not cached ({e}); run make setup")
    return d


def test_reader_sees_the_whisper_spec(ct2_dir):
    from pipeline.train.grass.convert import read_ct2, state_dict_from_ct2

    name, v, aliases = read_ct2(ct2_dir / "model.bin")
    assert name == "WhisperSpec" and aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    sd, cfg = state_dict_from_ct2(v)
    assert cfg["d_model"] == 512 and cfg["encoder_layers"] == cfg["decoder_layers"] == 6 and cfg["vocab_size"] == 51865
    n = sum(a.size for a in sd.values())
    assert 70e6 < n < 75e6  # Whisper base: 72.6 M parameters without the tied output projection


@pytest.fixture(scope="module")
def converted(ct2_dir, tmp_path_factory):
    from pipeline.train.grass.convert import convert_ct2

    return convert_ct2(ct2_dir, tmp_path_factory.mktemp("cache") / f"{ct2_dir.name}.hf")


def test_conversion_matches_ctranslate2(ct2_dir, converted):
    from pipeline.core.audio import load
    from pipeline.train.grass.convert import compare_with_ct2

    out = converted
    clips = ["audio/human_alsa_channels.wav"]  # bench_train.py checks all 12 kept sample clips
    res = compare_with_ct2(out, ct2_dir, [load(ROOT / "samples/en" / c) for c in clips], max_tokens=20)
    for c, r in zip(clips, res):
        assert r["encoder_cosine"] > 0.99999 and r["encoder_max_abs_diff"] < 0.02 * r["encoder_max_abs"], (c, r)
        assert r["hf_ids"] == r["ct2_ids"] and r["hf_text"], (c, r["hf_text"], r["ct2_text"])
    assert "front" in res[0]["hf_text"].lower()


def test_grass_model_loads_a_ct2_reference(ct2_dir, converted, monkeypatch):
    """GrassModel given a CTranslate2 directory uses its conversion in the model cache (made once) instead of refusing it."""
    from pipeline.core.config import TrainConfig
    from pipeline.train.grass import convert
    from pipeline.train.grass.config import GrassConfig
    from pipeline.train.grass.model import GrassModel

    monkeypatch.setattr(convert, "cache_dir", lambda: converted.parent)
    assert convert.hf_dir_for_ct2(str(ct2_dir)) == converted
    m = GrassModel(str(ct2_dir), TrainConfig(), GrassConfig(whisper=str(ct2_dir)), "en")
    assert m.model.config.d_model == 512
    # the converted decoder reads CTranslate2's encoder states of a 10 s window (grass.encoder_backend ctranslate2)
    from pipeline.core.audio import load
    from pipeline.train.encoders import CT2WhisperEncoder

    a = load(ROOT / "samples/en/audio/human_alsa_channels.wav")
    states = CT2WhisperEncoder(str(ct2_dir)).encode([a], trim=False, fixed_window_s=10.0)[0]
    assert states.shape == (500, 512)
    text = m.generate(m.prefix(""), m.torch.from_numpy(states)[None], 20)[0]
    assert "front" in text.lower() and "right" in text.lower(), text
    assert m.sot_seq == [50258, 50259, 50359, 50363]  # <|sot|><|en|><|transcribe|><|notimestamps|>
