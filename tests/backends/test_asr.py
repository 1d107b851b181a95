"""ASR backends on real models and real speech: the registry, batched == sequential, segments and words,
the segment helper, and the openai-whisper path on a random-weight checkpoint.

The fixtures here (real clips, the embedded faster-whisper model, its batched results) are imported by
tests/quality/test_asr_filters.py and tests/stages/test_asr.py; ``_once`` keeps one of each per session."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import typing

import numpy as np
import pytest

from pipeline.backends.asr import ASR, load_asr
from pipeline.backends.asr.base import ASRResult, split_segments
from pipeline.core.audio import load
from pipeline.core.config import ASRConfig
from pipeline.quality.asr_filters import check
from pipeline.stages.asr import result_columns
from tests.conftest import ROOT

AUDIO = ROOT / "samples/en/audio"
ENGLISH = ["human_librivox_0930.wav", "human_cards_005.ogg", "human_alsa_channels.wav"]  # real human speech
GERMAN = "Guten Morgen! Heute ist das Wetter wirklich schön, und wir gehen am Nachmittag spazieren."
_ONCE: dict = {}


def _once(key: str, make):
    """One value per test session, though three test modules use these fixtures."""
    if key not in _ONCE:
        _ONCE[key] = make()
    return _ONCE[key]


@pytest.fixture(scope="module")
def refs() -> dict:
    rows = [json.loads(x) for x in (ROOT / "samples/en/manifest.jsonl").read_text().splitlines()]
    return {r["path"].split("/")[-1]: r["text"] for r in rows}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, np.ndarray]:
    def make():
        d = tmp_path_factory.mktemp("asr")
        subprocess.run(["espeak-ng", "-v", "de", "-s", "150", "-w", str(d / "de.wav"), GERMAN], check=True)
        noise = (0.03 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32)  # white noise, no speech
        return {**{f: load(AUDIO / f) for f in ENGLISH}, "german": load(d / "de.wav"), "noise": noise}

    return _once("clips", make)


@pytest.fixture(scope="module")
def fw():
    return _once("fw", lambda: load_asr(ASRConfig(batch_size=8)))


@pytest.fixture(scope="module")
def batched(fw, clips) -> dict[str, ASRResult]:
    return _once("batched", lambda: dict(zip(clips, fw.transcribe_batch(list(clips.values()), 16000, None))))


def test_registry_matches_the_profile_choices(fw):
    assert set(ASR.names()) == set(typing.get_args(ASRConfig.model_fields["backend"].annotation))
    for entry in ASR:
        if not entry.missing():
            cls = entry.load()
            assert cls.name == entry.name and callable(cls.from_config) and callable(cls.transcribe_batch)
    assert type(fw) is ASR.get("faster-whisper") and isinstance(fw, ASR.protocol)


def test_batched_matches_sequential(fw, clips, batched, refs):
    from pipeline.core.text import wer

    names = ENGLISH[:2]
    seq = fw.transcribe_sequential([clips[n] for n in names], 16000, None)
    for n, s in zip(names, seq):
        b = batched[n]
        assert wer(s.text, b.text) <= 0.1, (s.text, b.text)
        assert b.language == s.language == "en"
        assert abs(b.language_prob - s.language_prob) < 0.05
        assert abs(b.avg_logprob - s.avg_logprob) < 0.1 and abs(b.no_speech_prob - s.no_speech_prob) < 0.05
    assert np.mean([wer(refs[n], batched[n].text) for n in ENGLISH]) < 0.3


def test_results_have_segments_words_and_columns(fw, clips, batched, refs):
    for n in ENGLISH:
        r, dur = batched[n], len(clips[n]) / 16000
        assert r.language == "en" and r.language_prob > 0.8 and -1.0 < r.avg_logprob < 0 and 0 <= r.no_speech_prob < 0.3
        assert r.segments and all(0 <= s["start"] <= s["end"] <= dur + 0.5 for s in r.segments)
        assert " ".join(s["text"] for s in r.segments) == r.text
        assert len(r.words) >= len(r.text.split()) - 1
        assert all(0 <= w["start"] <= w["end"] <= dur + 0.5 and 0 <= w["p"] <= 1 for w in r.words)
        assert [w["start"] for w in r.words] == sorted(w["start"] for w in r.words)
        cols = result_columns(r, fw, refs[n])
        assert json.loads(cols["asr_words_json"]) == r.words and json.loads(cols["asr_segments_json"]) == r.segments
        assert 0 <= cols["cer"] <= cols["wer"] + 0.2 and cols["asr_model"] == "faster-whisper:embedded:whisper-base-ct2"
    assert result_columns(batched[ENGLISH[0]], fw, None)["cer"] is None


def test_segment_helper():
    # <|0.00|> hello <|1.00|><|1.00|> world <|2.00|> tail (no closing timestamp)
    tb, eot = 1000, 999
    segs = split_segments([tb, 1, tb + 50, tb + 50, 2, tb + 100, 3], tb, eot, lambda t: " w" + "".join(map(str, t)), 3.0)
    assert [(s["start"], s["end"], s["text"]) for s in segs] == [(0.0, 1.0, " w1"), (1.0, 2.0, " w2"), (0.0, 3.0, " w3")]
    assert split_segments([1, 2, eot], tb, eot, lambda t: "x", 2.5)[0]["end"] == 2.5


def test_openai_whisper_backend_random_checkpoint(tmp_path, clips):
    """The reference PyTorch backend through its normal loading path: a real-format .pt checkpoint
    ({"dims", "model_state_dict"}) of a tiny random-weight Whisper (no real checkpoint is available offline)."""
    import torch
    from whisper.model import ModelDimensions, Whisper
    from whisper.tokenizer import LANGUAGES

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
                           n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)
    ckpt = tmp_path / "tiny-random.pt"
    model = Whisper(dims)
    # openai-whisper allocates the decoder's positional embedding with torch.empty (a real checkpoint overwrites it):
    # uninitialised memory can hold NaN/inf, so give it values as training would start from
    torch.nn.init.normal_(model.decoder.positional_embedding, std=0.02)
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, ckpt)

    cfg = ASRConfig(backend="openai-whisper", model=str(ckpt), batch_size=2, temperatures=[0.0, 0.5], best_of=2,
                    max_new_tokens=8)  # random weights loop until the limit, then fall back to sampling
    backend = load_asr(cfg)
    assert backend.name == "openai-whisper" and backend.model.dims == dims
    audios = [clips[ENGLISH[0]], clips["noise"], clips[ENGLISH[1]]]  # a batch of 2, then 1
    results = backend.transcribe_batch(audios, 16000, None)
    assert len(results) == 3 and results[0].text == backend.transcribe_batch(audios[:1], 16000, None)[0].text
    for r, a in zip(results, audios):
        assert isinstance(r, ASRResult) and isinstance(r.text, str)
        assert r.language in LANGUAGES and 0 < r.language_prob <= 1
        assert r.avg_logprob <= 0 and 0 <= r.no_speech_prob <= 1 and r.compression_ratio >= 0
        assert r.temperature in (0.0, 0.5)
        assert all(set(s) == {"start", "end", "text"} and s["start"] <= s["end"] for s in r.segments)
        assert all(set(w) == {"word", "start", "end", "p"} for w in r.words)
        cols = result_columns(r, backend, "reference")
        assert json.loads(cols["asr_segments_json"]) == r.segments and cols["asr_model"].startswith("openai-whisper:")
        assert check(r, len(a) / 16000, "en") is None or isinstance(check(r, len(a) / 16000, "en")[1], str)
    forced = backend.transcribe_batch(audios[:1], 16000, "en")[0]
    assert forced.language == "en" and forced.language_prob == 1.0
    assert any(r.words for r in results + [forced])  # word timestamps through whisper.timing
