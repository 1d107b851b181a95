"""End to end for one non-Latin-script language (ja) and one more European language (de), on real models:
a tiny input from the language's sample corpus (two clips in the language + one English clip), one QA pair.

Checks what the language changes: the English clip is rejected by the ASR language check, the kept rows are
in the profile language, the label tasks and prompts come from the language's files, speaking rate and error
rate use the language's units (morae and CER for ja), TTS uses the language's voices, and the dataset card
carries the language tag and says what the embedded models cannot do."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from pipeline.cli import run_direct
from pipeline.core.config import load_profile
from pipeline.core.text import error_rate, word_count
from pipeline.quality.text_rules import detect_language

from tests.conftest import ROOT

CLIPS = {"ja": ["kokoro_01_female.wav", "kokoro_02_male.flac"], "de": ["espeak_04_male.mp3", "espeak_05_female.flac"]}
ENGLISH = "english_espeak_m3.ogg"


def table(out, name):
    files = sorted((out / name).glob("part-*.parquet"))
    return pq.ParquetDataset(files).read().to_pylist() if files else []


@pytest.fixture(scope="module", params=["ja", "de"])
def built(request, tmp_path_factory):
    lang = request.param
    tmp = tmp_path_factory.mktemp(f"lang_{lang}")
    samples = ROOT / "samples" / lang
    rows = {json.loads(x)["path"].split("/")[-1]: json.loads(x) for x in (samples / "manifest.jsonl").read_text().splitlines()}
    with open(tmp / "manifest.jsonl", "w") as f:
        for name in CLIPS[lang] + [ENGLISH]:
            r = rows[name]
            f.write(json.dumps({**r, "path": str(samples / r["path"])}, ensure_ascii=False) + "\n")
    texts = (samples / "instructions.jsonl").read_text().splitlines()
    (tmp / "instructions.jsonl").write_text("\n".join([texts[1], texts[3]]) + "\n")  # numbers; a URL
    profile = load_profile(lang, input=str(tmp / "manifest.jsonl"), **{
        "tts.input": str(tmp / "instructions.jsonl"), "llm.n_qa": 1, "llm.retries": 1, "llm.max_tokens": 100,
        "tts.length_scales": [1.0]})
    counts = run_direct(profile, str(tmp / "out"), report=False)
    return lang, tmp / "out" / lang, counts


def test_english_clip_is_rejected_and_kept_rows_are_in_the_language(built):
    lang, out, counts = built
    utts, rejects = table(out, "utterances"), table(out, "rejects")
    assert counts["utterances"] == len(utts) >= 1
    eng = [r for r in rejects if r["source_path"].endswith(ENGLISH)]
    assert [r["reason"] for r in eng] == ["language_mismatch"] and "detected en" in eng[0]["detail"]
    assert all(u["asr_language"] == lang for u in utts)
    for u in utts:  # error rate and speaking rate in the language's units
        assert u["wer"] is not None and u["cer"] is not None
        if lang == "ja":
            assert u["speaking_rate_source"].endswith("unit=morae")
            # CER without the spaces Whisper puts between Japanese phrases
            assert u["cer"] == pytest.approx(error_rate(u["reference_text"], u["asr_text"], "ja"), abs=1e-6)
        else:
            assert "unit=" not in u["speaking_rate_source"] and ":de" in u["speaking_rate_source"]


def test_instructions_use_the_language_files_and_pass_the_language_filter(built):
    lang, out, _ = built
    inst = table(out, "instructions")
    tasks = {r["task"] for r in inst}
    assert {"asr", "gender", "language"} <= tasks
    for r in inst:
        if r["engine"] == "template":
            assert r["prompt_template"].startswith(f"tasks/{lang}/"), r["prompt_template"]
        if r["task"] == "language":
            assert r["response"] in {"ja": ["話者は日本語を話しています。", "日本語です。", "言語は日本語です。"],
                                     "de": ["Die Person spricht Deutsch.", "Deutsch.", "Die Sprache ist Deutsch."]}[lang]
        if r["task"] in ("description", "qa"):
            assert r["prompt_template"].startswith(f"{lang}/"), r["prompt_template"]
            if word_count(r["response"], lang) >= 4:  # the language filter let it through: py3langid agrees
                got, p = detect_language(r["response"])
                assert got == lang or p < 0.9, (r["response"], got, p)
    rejects = table(out, "rejects")
    assert any(r["reason"] == "unspeakable_url" for r in rejects)
    tts = [r for r in inst if r["task"] == "tts_instruction"]
    voices = load_profile(lang).tts.voices
    for r in tts:
        s = json.loads(r["tts_settings_json"])
        assert r["voice"] in voices
        assert s["gate_metric"] == ("cer" if lang == "ja" else "wer")
    gate = [r for r in rejects if r["reason"] == "gate_wer"]
    assert len(tts) + len(gate) == 1  # the one speakable instruction is either kept or fails the round trip


def test_card_and_manifest_carry_the_language(built):
    lang, out, _ = built
    card = (out / "README.md").read_text()
    assert f"language:\n- {lang}\n" in card
    assert "## Language:" in card and "cannot do" in card
    for lim in load_profile(lang).limitations:
        assert lim in card
    m = json.loads((out / "_manifest.json").read_text())
    assert m["language"] == lang and m["language_support"]["error_metric"] == ("cer" if lang == "ja" else "wer")
