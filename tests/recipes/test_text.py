"""pipeline.recipes.text: text instruction corpora readers (no models, fast)."""
from __future__ import annotations

import json

import pytest

from pipeline.recipes.text import TextInstruction, read_corpus

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
