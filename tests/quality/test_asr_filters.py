"""ASR reject filters on real results (German, noise, clean English from the embedded Whisper) and on
edited copies of a clean result, one per reason; thresholds from the config; the WER/CER summary."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline.core.config import ASRConfig, load_profile
from pipeline.quality.asr_filters import check, max_ngram_repeat, summarize_wer
from tests.backends.test_asr import ENGLISH, batched, clips, fw  # noqa: F401 (fixtures)


def test_german_is_detected_and_rejected(batched):
    r = batched["german"]
    assert r.language == "de" and r.language_prob > 0.5, (r.language, r.language_prob, r.text)
    assert "guten morgen" in r.text.lower()
    assert check(r, 6.0, "en")[0] == "language_mismatch"
    assert check(r, 6.0, "de") is None


def test_no_speech_and_clean_speech(clips, batched):
    # White noise must never be kept. Which filter catches it depends on the temperature-fallback sample
    # (faster-whisper's sampled text on noise differs between the first and later calls of a model): no speech,
    # or a spurious language / repeated tokens. The asr_no_speech rule itself is tested exactly below.
    bad = check(batched["noise"], 3.0, "en")
    assert bad and bad[0] in ("asr_no_speech", "language_mismatch", "asr_repetitive", "asr_filler_phrase",
                              "asr_low_confidence"), (batched["noise"], bad)
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


def test_ngram_repeat():
    assert max_ngram_repeat("a b c a b c a b c d".split()) == (3, "a b c")
    assert max_ngram_repeat("no repetition at all here".split())[0] == 1


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
