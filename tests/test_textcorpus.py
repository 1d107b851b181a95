"""Text instruction corpora readers and normalisation for speech (no models, fast)."""
from __future__ import annotations

import json

import pytest

from pipeline.textcorpus import (
    TextInstruction,
    Unspeakable,
    normalize_for_speech,
    read_corpus,
    speech_text,
)

ALPACA = [
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep."},
    {"instruction": "Translate the following sentence into French.", "input": "The weather is nice today.",
     "output": "Il fait beau aujourd'hui."},
    {"instruction": "", "input": "", "output": "An answer without a question."},  # missing instruction
    {"instruction": "Classify the sentiment of this review.", "input": "I loved the food.", "output": 5},  # bad type
    "not an object",
    {"instruction": "Name the capital of Australia.", "output": "Canberra."},  # no input key: allowed
]

SNI_TASK = {
    "Contributors": ["Someone"],
    "Source": ["jfleg"],
    "Categories": ["Grammar Error Correction"],
    "Definition": ["In this task, you are given a sentence with grammatical errors.",
                   "Your task is to rewrite the sentence without the errors."],
    "Positive Examples": [{"input": "She go to school every days.", "output": "She goes to school every day.",
                           "explanation": "Verb agreement and plural fixed."}],
    "Negative Examples": [],
    "Input_language": ["English"],
    "Output_language": ["English"],
    "Instances": [
        {"id": "task1557-3f2a9c", "input": "He have two brother and one sisters.",
         "output": ["He has two brothers and one sister.", "He has two brothers and a sister."]},
        {"id": "task1557-77b0e1", "input": "They was happy for see us.", "output": ["They were happy to see us."]},
        {"id": "task1557-0c1d2e", "input": "A sentence without a reference.", "output": []},  # no output
        {"id": "task1557-3f2a9c", "input": "Duplicate id.", "output": ["x"]},  # duplicate
    ],
}

MARCO = [
    {"query_id": 1102432, "query": "what is the boiling point of water at sea level",
     "query_type": "NUMERIC",
     "passages": [
         {"is_selected": 0, "url": "http://a.example/x", "passage_text": "Water is a transparent liquid."},
         {"is_selected": 1, "url": "http://b.example/y",
          "passage_text": "At sea level, pure water boils at 100 degrees Celsius (212 degrees Fahrenheit)."}],
     "answers": ["100 degrees Celsius"], "wellFormedAnswers": []},
    {"query_id": 19699, "query": "how long is a marathon", "query_type": "NUMERIC",
     "passages": [{"is_selected": 0, "url": "http://c.example", "passage_text": "A marathon is 42.195 km long."}],
     "answers": ["42.195 kilometres"]},
    {"id": 555, "query": "who wrote hamlet", "passage": "Hamlet is a tragedy written by William Shakespeare.",
     "answers": ["William Shakespeare"]},
    {"query_id": 20000, "query": "what is the meaning of zzz", "passages": [], "answers": ["No Answer Present."]},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in rows) + "\n")
    return path


# ----------------------------------------------------------------------------------------- readers


def test_alpaca_json_array(tmp_path):
    p = tmp_path / "alpaca_data.json"
    p.write_text(json.dumps(ALPACA, indent=2))
    recs, rejects = read_corpus(p)
    assert [r.id for r in recs] == ["alpaca_data:0", "alpaca_data:1", "alpaca_data:5"]
    assert all(isinstance(r, TextInstruction) and r.source == "alpaca_data" for r in recs)
    assert recs[1].input == "The weather is nice today." and recs[1].output == "Il fait beau aujourd'hui."
    assert recs[2].input == "" and recs[2].meta["format"] == "alpaca"
    assert {(i, reason) for i, reason, _ in rejects} == {
        ("alpaca_data:2", "missing_instruction"), ("alpaca_data:3", "bad_type"), ("alpaca_data:4", "not_an_object")}
    # stable: same ids on a second read
    assert [r.id for r in read_corpus(p)[0]] == [r.id for r in recs]


def test_alpaca_jsonl_with_bad_line_and_own_ids(tmp_path):
    rows = [{"id": "a1", **ALPACA[0]}, "{this is not json", {"id": "a2", **ALPACA[1]}, {"id": "a1", **ALPACA[5]}]
    p = write_jsonl(tmp_path / "mine.jsonl", rows)
    recs, rejects = read_corpus(p, source="myset")
    assert [r.id for r in recs] == ["myset:a1", "myset:a2"]
    reasons = {reason for _, reason, _ in rejects}
    assert reasons == {"bad_json", "duplicate_id"}
    bad = next(r for r in rejects if r.reason == "bad_json")
    assert bad.id == "myset:1" and "line 2" in bad.detail


def test_jsonl_index_ids_ignore_blank_lines(tmp_path):
    p = tmp_path / "alpaca.jsonl"
    p.write_text(json.dumps(ALPACA[0]) + "\n\n" + json.dumps(ALPACA[1]) + "\n")
    assert [r.id for r in read_corpus(p)[0]] == ["alpaca:0", "alpaca:1"]


def test_sni_task(tmp_path):
    p = tmp_path / "task1557_jfleg_answer_generation.json"
    p.write_text(json.dumps(SNI_TASK))
    recs, rejects = read_corpus(p)
    assert [r.id for r in recs] == ["task1557-3f2a9c", "task1557-77b0e1"]
    r = recs[0]
    assert r.instruction == ("In this task, you are given a sentence with grammatical errors. "
                             "Your task is to rewrite the sentence without the errors.")
    assert r.input == "He have two brother and one sisters."
    assert r.output == "He has two brothers and one sister."
    assert r.meta["outputs"][1] == "He has two brothers and a sister."
    assert r.meta["categories"] == ["Grammar Error Correction"] and r.meta["n_positive_examples"] == 1
    assert r.source == "task1557_jfleg_answer_generation"
    assert sorted((i, reason) for i, reason, _ in rejects) == [
        ("task1557-0c1d2e", "missing_output"), ("task1557-3f2a9c", "duplicate_id")]


def test_marco_jsonl(tmp_path):
    p = write_jsonl(tmp_path / "marco_dev.jsonl", MARCO)
    recs, rejects = read_corpus(p)
    assert [r.id for r in recs] == ["marco_dev:1102432", "marco_dev:19699", "marco_dev:555"]
    boil = recs[0]
    assert boil.instruction == "what is the boiling point of water at sea level"
    assert boil.input.startswith("At sea level, pure water boils")  # the selected passage, not the first
    assert boil.output == "100 degrees Celsius" and boil.meta["query_type"] == "NUMERIC"
    assert recs[1].input == "A marathon is 42.195 km long."  # no passage selected -> first
    assert recs[2].input.startswith("Hamlet is a tragedy")  # plain "passage"
    assert [(i, reason) for i, reason, _ in rejects] == [("marco_dev:20000", "no_answer")]


def test_marco_official_columnar_json(tmp_path):
    cols = {k: {str(i): row.get(k) for i, row in enumerate(MARCO[:2])} for k in ("query_id", "query", "passages", "answers")}
    p = tmp_path / "dev_v2.1.json"
    p.write_text(json.dumps(cols))
    recs, rejects = read_corpus(p)
    assert [r.output for r in recs] == ["100 degrees Celsius", "42.195 kilometres"] and not rejects


def test_explicit_format_and_detection_by_content(tmp_path):
    p = write_jsonl(tmp_path / "data.txt", MARCO[:1])  # extension says nothing
    assert read_corpus(p)[0][0].meta["format"] == "marco"
    assert read_corpus(p, format="marco")[0][0].id == "data:1102432"
    with pytest.raises(ValueError, match="unknown text corpus format"):
        read_corpus(p, format="csv")


@pytest.mark.parametrize("content, match", [
    (None, "does not exist"),
    (b"", "empty"),
    (b"\xff\xfe\x00garbage\x80", "not UTF-8"),
    (b"just some prose, not json at all\nsecond line", "neither JSON nor JSONL"),
    (b'{"foo": 1, "bar": 2}', "unrecognised JSON object"),
    (b'[{"question": "q", "answer": "a"}]', "no record looks like"),
])
def test_unreadable_files_raise_valueerror(tmp_path, content, match):
    p = tmp_path / "corpus.json"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_corpus(p)


# ------------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize("raw, expected", [
    ("It costs $12.50, or $1,000 for 3 items.",
     "It costs twelve dollars and fifty cents, or one thousand dollars for three items."),
    ("Growth was 3.5% in 2023.", "Growth was three point five percent in twenty twenty-three."),
    ("Dr. Smith came 21st & left at 10:30.", "Doctor Smith came twenty-first and left at ten thirty."),
    ("Fruits, e.g. apples, pears, etc.", "Fruits, for example apples, pears, et cetera."),
    ("What is 2 + 2 = 4?", "What is two plus two equals four?"),
    ("It was 25°C, i.e. warm.", "It was twenty-five degrees Celsius, that is warm."),
    ("In the 1990s it sold for £5 million.", "In the nineteen nineties it sold for five million pounds."),
    ("Rotate it 90° and  wait\t -5 minutes.", "Rotate it ninety degrees and wait minus five minutes."),
    ("Title\n\nSome text here.\nMore text", "Title, Some text here. More text"),  # line breaks are pauses
    ("Born in 1889, he lived 2048 days.", "Born in eighteen eighty-nine, he lived two thousand and forty-eight days."),
    ("List 3 reasons:\n- cost\n- speed\n- **quality**", "List three reasons: cost, speed, quality"),
    ("Explain C++ to a 5 year old.", "Explain C plus plus to a five year old."),
    ("Call me at 3pm, No. 7 said.", "Call me at three p.m., number seven said."),
])
def test_normalize_for_speech(raw, expected):
    assert normalize_for_speech(raw) == expected


@pytest.mark.parametrize("raw, reason", [
    ("Explain this:\n```python\nprint('hi')\n```", "code"),
    ("What does `len(x)` return?", "code"),
    ("def add(a, b):\n    return a + b", "code"),
    ("for (int i = 0; i < n; i++) { sum += i; }", "code"),
    ("Fix: if (a && b) return c;", "code"),
    ("Summarise https://en.wikipedia.org/wiki/Speech for me", "url"),
    ("Write to jane.doe@example.org about it", "url"),
    ("Is example.com a good domain?", "url"),
    ("", "empty"),
    ("   \n ", "empty"),
    ("*** ### ---", "empty"),
    ("Rate these: 😀😀😀😀😀", "symbols"),
    ("word " * 120, "too_long"),
])
def test_unspeakable(raw, reason):
    with pytest.raises(Unspeakable) as e:
        normalize_for_speech(raw)
    assert e.value.reason == reason


def test_unspeakable_limit_is_configurable():
    text = "Describe the water cycle in simple words for a child."
    assert normalize_for_speech(text, max_chars=60) == text
    with pytest.raises(Unspeakable) as e:
        normalize_for_speech(text, max_chars=20)
    assert e.value.reason == "too_long"


def test_prose_is_not_mistaken_for_code():
    for text in ["Let me know what you think.", "Select the best answer from the options below.",
                 "Import duties rose in 2020.", "Class A students scored 90% on average."]:
        normalize_for_speech(text)


def test_other_language_spells_numbers():
    assert normalize_for_speech("Ich habe 3 Katzen.", lang="de") == "Ich habe drei Katzen."


def test_speech_text_and_normalisation():
    rec = TextInstruction(id="x:0", source="x", instruction="Summarize the text below",
                          input="The meeting moved to 3:30 pm on May 2nd.", output="Moved to May 2nd.")
    assert speech_text(rec, "instruction") == "Summarize the text below"
    assert speech_text(rec, "input") == "The meeting moved to 3:30 pm on May 2nd."
    both = normalize_for_speech(speech_text(rec, "both"))
    assert both == "Summarize the text below. The meeting moved to three thirty p.m. on May second."
    empty = TextInstruction(id="x:1", source="x", instruction="Tell me a joke.")
    assert speech_text(empty, "both") == "Tell me a joke."
    with pytest.raises(Unspeakable) as e:
        normalize_for_speech(speech_text(empty, "input"))
    assert e.value.reason == "empty"
    with pytest.raises(ValueError):
        speech_text(rec, "output")
