"""ASR on real models and real speech: batched == sequential, language ID, every reject filter,
the openai-whisper path on a random-weight checkpoint, WER/CER columns and summary."""
from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import pytest

from pipeline.asr import ASRResult, check, load_asr, max_ngram_repeat, result_columns, split_segments, summarize_wer
from pipeline.audio import encode_flac, load
from pipeline.config import ASRConfig, load_profile

from .conftest import ROOT

AUDIO = ROOT / "samples/en/audio"
ENGLISH = ["human_librivox_0930.wav", "human_cards_005.ogg", "human_alsa_channels.wav"]  # real human speech
GERMAN = "Guten Morgen! Heute ist das Wetter wirklich schön, und wir gehen am Nachmittag spazieren."


@pytest.fixture(scope="module")
def refs() -> dict:
    rows = [json.loads(x) for x in (ROOT / "samples/en/manifest.jsonl").read_text().splitlines()]
    return {r["path"].split("/")[-1]: r["text"] for r in rows}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, np.ndarray]:
    d = tmp_path_factory.mktemp("asr")
    subprocess.run(["espeak-ng", "-v", "de", "-s", "150", "-w", str(d / "de.wav"), GERMAN], check=True)
    noise = (0.03 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32)  # white noise, no speech
    return {**{f: load(AUDIO / f) for f in ENGLISH}, "german": load(d / "de.wav"), "noise": noise}


@pytest.fixture(scope="module")
def fw():
    return load_asr(ASRConfig(batch_size=8))


@pytest.fixture(scope="module")
def batched(fw, clips) -> dict[str, ASRResult]:
    return dict(zip(clips, fw.transcribe_batch(list(clips.values()), 16000, None)))


def test_batched_matches_sequential(fw, clips, batched, refs):
    from pipeline.textnorm import wer

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


def test_german_is_detected_and_rejected(batched):
    r = batched["german"]
    assert r.language == "de" and r.language_prob > 0.5, (r.language, r.language_prob, r.text)
    assert "guten morgen" in r.text.lower()
    assert check(r, 6.0, "en")[0] == "language_mismatch"
    assert check(r, 6.0, "de") is None


def test_no_speech_and_clean_speech(clips, batched):
    reason, detail = check(batched["noise"], 3.0, "en")
    assert reason == "asr_no_speech", (batched["noise"], detail)
    for n in ENGLISH:
        assert check(batched[n], len(clips[n]) / 16000, "en") is None, (n, batched[n])


@pytest.mark.parametrize("text,duration,update,reason", [
    ("Thanks for watching!", 3.0, {}, "asr_filler_phrase"),
    ("He might even have been made amiable himself. Subtitles by the Amara.org community", 6.0, {}, "asr_filler_phrase"),
    ("Untertitel im Auftrag des ZDF, 2021", 3.0, {}, "asr_filler_phrase"),
    ("[Music]", 3.0, {}, "asr_filler_phrase"),
    ("you", 3.0, {}, "asr_filler_phrase"),
    ("I'm sorry. I'm sorry. I'm sorry. I'm sorry. I'm sorry.", 4.0, {}, "asr_repetitive"),
    ("the the the the the", 3.0, {}, "asr_repetitive"),
    ("He might even have been made amiable himself.", 3.3, {"avg_logprob": -1.4}, "asr_low_confidence"),
    ("He might even have been made amiable himself.", 3.3, {"no_speech_prob": 0.9, "avg_logprob": -1.2}, "asr_no_speech"),
    ("He might even have been made amiable himself, and then much more than that was said about him.", 1.5, {},
     "asr_too_long"),
    ("Himself.", 12.0, {}, "asr_too_short"),
    ("", 3.0, {"no_speech_prob": 0.1}, "asr_empty"),
])
def test_each_filter_fires(batched, text, duration, update, reason):
    clean = batched["human_librivox_0930.wav"]  # a real, clean result; only the tested fields change
    r = dataclasses.replace(clean, text=text, **update)
    r = dataclasses.replace(r, compression_ratio=None)  # recomputed by check from the text
    got = check(r, duration, "en")
    assert got and got[0] == reason, (text, got)
    assert check(clean, 3.29, "en") is None


def test_filter_thresholds_come_from_config(batched):
    r = dataclasses.replace(batched["human_librivox_0930.wav"], avg_logprob=-0.9)
    assert check(r, 3.3, "en") is None
    assert check(r, 3.3, "en", ASRConfig(min_avg_logprob=-0.5))[0] == "asr_low_confidence"
    assert check(dataclasses.replace(r, text="We like this video."), 3.3, "en",
                 ASRConfig(hallucination_phrases=["like this video"]))[0] == "asr_filler_phrase"
    assert load_profile("en").asr.batched and load_profile("en").asr.batch_size >= 1


def test_ngram_and_segment_helpers():
    assert max_ngram_repeat("a b c a b c a b c d".split()) == (3, "a b c")
    assert max_ngram_repeat("no repetition at all here".split())[0] == 1
    # <|0.00|> hello <|1.00|><|1.00|> world <|2.00|> tail (no closing timestamp)
    tb, eot = 1000, 999
    segs = split_segments([tb, 1, tb + 50, tb + 50, 2, tb + 100, 3], tb, eot, lambda t: " w" + "".join(map(str, t)), 3.0)
    assert [(s["start"], s["end"], s["text"]) for s in segs] == [(0.0, 1.0, " w1"), (1.0, 2.0, " w2"), (0.0, 3.0, " w3")]
    assert split_segments([1, 2, eot], tb, eot, lambda t: "x", 2.5)[0]["end"] == 2.5


def test_wer_cer_summary():
    rows = [{"reference_text": "eight of spades", "asr_text": "8 of spades"},
            {"reference_text": "front left", "asr_text": "Front, left."},
            {"reference_text": None, "asr_text": "no reference"}]
    s = summarize_wer(rows)
    assert s["utterances"] == 3 and s["with_reference"] == 2
    assert s["corpus_wer"] == pytest.approx(1 / 5) and s["mean_wer"] == pytest.approx(1 / 6, abs=1e-4)
    assert s["corpus_cer"] == pytest.approx(5 / 25) and s["share_exact"] == 0.5  # "eight" -> "8": 5 of 25 characters
    import pyarrow as pa

    assert summarize_wer(pa.Table.from_pylist(rows)) == s
    assert summarize_wer([{"reference_text": None, "asr_text": "x"}])["corpus_wer"] is None


def test_stage_writes_columns_and_rejects(batched, clips):
    from pipeline import schema
    from pipeline.asr_stage import transcribe

    class Replay:  # the stage's contract with a backend, replaying the real results above
        name, model_id = "faster-whisper", "replay"

        def transcribe_batch(self, audios, sample_rate, language=None):
            assert sample_rate == 16000 and len(audios) == 2
            return [batched[ENGLISH[0]], batched["german"]]

    rows = [{"id": f"u{i}", "source_id": f"s{i}", "source_path": n, "segment_index": 0, "start_s": 0.0, "end_s": len(clips[n]) / 16000, "sample_rate": 16000,
             "duration_s": len(clips[n]) / 16000, "reference_text": "He might even have been made amiable himself." if i == 0 else None,
             "audio": {"bytes": encode_flac(clips[n], 16000), "path": None}} for i, n in enumerate([ENGLISH[0], "german"])]
    kept, rejects = transcribe(Replay(), rows, load_profile("en"))
    assert [r["id"] for r in kept] == ["u0"] and kept[0]["wer"] == 0.0 and kept[0]["cer"] == 0.0
    assert json.loads(kept[0]["asr_words_json"])
    assert rejects[0]["id"] == "u1" and rejects[0]["reason"] == "language_mismatch"
    t = schema.to_table("utterances", kept)
    assert t.column("asr_words_json")[0].as_py() == kept[0]["asr_words_json"]


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
