"""Quality filters: rule filters, near-duplicate removal (datasketch MinHash LSH), the LLM judge on
real embedded models (SmolLM2 where only the mechanics matter)."""
import json

import pytest

from pipeline.config import LLMConfig
from pipeline.generate import Generate
from pipeline.llm import load_llm
from pipeline.prompts import render
from pipeline.quality import (Candidate, Judge, QAPair, check_description, check_qa, check_text, contradicts_labels,
                              grounded, language_mismatch, leaked_prompt, near_duplicates, parse_judge, parse_qa_pairs,
                              prompt_ngrams)

T = "The museum opens at nine in the morning and closes at six on weekdays."
ROW = {"id": "u1", "source_path": "a.wav", "start_s": 0.0, "end_s": 4.2, "duration_s": 4.2, "reference_text": T,
       "gender": "female", "pitch_mean_hz": 215.0, "snr_db": 24.0, "asr_language": "en",
       "audio": {"bytes": b"", "path": "u1.flac"}}
SMOL = "embedded:smollm2-135m-instruct-q4_1"


# ---- rules --------------------------------------------------------------------------------------------
def test_length_refusal_and_leak_rules():
    assert check_text("Too short.")[0] == "too_short"
    assert check_text("word " * 201)[0] == "too_long"
    assert check_text("I'm sorry, but as an AI I cannot hear audio at all.")[0] == "refusal"
    assert check_text("The transcript says the museum opens at nine.")[0] == "prompt_leak"
    assert check_text("A calm female voice says the museum opens at nine in the morning.") is None


def test_verbatim_prompt_copy_is_a_leak():
    grams = prompt_ngrams(render("desta_system.j2"))
    copied = "Sure. Answer the user's question about the audio naturally, as if you were listening to it."
    assert leaked_prompt(copied, grams)[0] == "prompt_leak"
    assert "copies the prompt" in leaked_prompt(copied, grams)[1]
    assert leaked_prompt("A woman says the museum opens at nine in the morning on weekdays.", grams) is None


def test_language_rule():
    assert language_mismatch("El museo abre a las nueve de la mañana y cierra a las seis.", "en")[0] == "wrong_language"
    assert language_mismatch("The museum opens at nine in the morning.", "en") is None
    assert language_mismatch("Das Museum öffnet um neun Uhr morgens.", "de") is None
    assert language_mismatch("At nine.", "en") is None  # too short to judge: not rejected
    assert language_mismatch("El museo abre a las nueve.", None) is None  # no expectation: not judged


def test_description_rules_use_labels_and_language():
    cfg = LLMConfig()
    ok = "A woman with a clear voice says that the museum opens at nine and closes at six."
    assert check_description(ok, ROW, T, cfg, language="en") is None
    bad = check_description("A man with a deep voice says that the museum opens at nine.", ROW, T, cfg, language="en")
    assert bad[0] == "contradicts_labels" and "female" in bad[1]
    # a gender word quoted from the transcript is not a contradiction
    assert contradicts_labels("She repeats: the man opened the door.", ROW, "The man opened the door.") is None
    # a manifest label (given by a person) wins over the estimate
    labelled = {**ROW, "gender": "male", "labels_json": json.dumps({"gender": "female"})}
    assert contradicts_labels("A woman speaks.", labelled) is None
    assert check_description("El museo abre a las nueve de la mañana y cierra a las seis de la tarde.", ROW, T, cfg,
                             language="en")[0] == "wrong_language"


def test_qa_rules():
    cfg = LLMConfig()
    good = QAPair(question="When does the museum open?", answer="At nine in the morning.")
    g, fail = check_qa(good, T, cfg, language="en")
    assert fail is None and g == grounded(good.answer, T) == 1.0
    assert check_qa(QAPair(question="What is the capital of France?", answer="Paris is the capital."), T, cfg)[1][0] == "ungrounded"
    assert check_qa(QAPair(question="When does the museum open?", answer=" ".join(["nine"] * 41)), T, cfg)[1][0] == "too_long"
    assert check_qa(QAPair(question="When does the museum open?", answer="When does the museum open?"), T, cfg)[1][0] == "answer_repeats_question"
    assert check_qa(QAPair(question="What is in the transcript here?", answer="nine"), T, cfg)[1][0] == "prompt_leak"


def test_parse_qa_pairs_salvages_complete_pairs_of_a_cut_reply():
    full = '{"pairs": [{"question": "When does it open?", "answer": "At nine."}, {"question": "When does it close?", "answer": "At six."}]}'
    pairs, fail = parse_qa_pairs(full)
    assert fail is None and [p.answer for p in pairs] == ["At nine.", "At six."]
    cut = full[:-40]  # max_tokens ran out inside the second pair
    pairs, fail = parse_qa_pairs(cut)
    assert fail is None and [p.answer for p in pairs] == ["At nine."]
    assert parse_qa_pairs('{"pairs": [{"question": "When?"')[1][0] == "malformed_json"
    assert parse_qa_pairs("no json")[1][0] == "malformed_json"


def test_parse_judge():
    s, fail = parse_judge('{"groundedness": 4, "usefulness": 2}')
    assert fail is None and (s.groundedness, s.usefulness) == (4, 2)
    assert parse_judge('{"groundedness": 9, "usefulness": 2}')[1][0] == "judge_malformed"
    assert parse_judge("five out of five")[1][0] == "judge_malformed"


# ---- near duplicates ------------------------------------------------------------------------------------
def test_minhash_lsh_near_duplicates_name_the_kept_twin():
    texts = [
        "A calm woman says the museum opens at nine in the morning and closes at six on weekdays.",
        "A woman explains that the train to the coast leaves from platform four in twenty minutes.",
        "A calm woman says the museum opens at nine in the morning, and closes at six on weekdays!",
        "A calm woman says that the museum opens at nine in the morning and closes at six on weekdays.",
        "Someone talks about planting tomatoes, beans and sunflowers in the garden.",
    ]
    dup = near_duplicates(texts, threshold=0.8, num_perm=128)
    assert dup == {2: 0, 3: 0}
    # the order decides which twin is kept
    assert near_duplicates(texts[::-1], threshold=0.8, num_perm=128) == {2: 1, 4: 1}
    assert near_duplicates(texts, threshold=0.95, num_perm=128) == {2: 0}  # only punctuation differs: same shingles


# ---- judge on a real model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smol():
    cfg = LLMConfig(model=SMOL, max_tokens=40, retries=1, temperature=0.0, n_qa=1)
    return cfg, load_llm(cfg)


def test_judge_scores_are_schema_constrained_json(smol):
    cfg, engine = smol
    judge = Judge(cfg, engine)
    cands = [Candidate("a-qa-0", "qa", T, "When does the museum open?", "At nine in the morning.", 11),
             Candidate("a-description-0", "description", "[00:00-00:04] " + T + " (Gender: Female, Duration: 4s)",
                       "What can you hear from the audio?", "A woman says the museum opens at nine.", 12)]
    judge.score(cands)
    for c in cands:
        assert c.scores is not None and 1 <= c.scores.groundedness <= 5 and 1 <= c.scores.usefulness <= 5
        assert json.loads(c.judge_raw) == {"groundedness": c.scores.groundedness, "usefulness": c.scores.usefulness}
    # the threshold decides; the scores travel with the rejection
    strict = Judge(cfg.model_copy(update={"judge_min_score": 5}), engine)
    c = Candidate("x", "qa", T, "q", "a", 0, scores=parse_judge('{"groundedness": 5, "usefulness": 4}')[0],
                  judge_raw='{"groundedness": 5, "usefulness": 4}')
    reason, detail = strict.verdict(c)
    assert reason == "judge_low" and "groundedness 5/5, usefulness 4/5" in detail and "threshold 5" in detail
    assert judge.verdict(c) is None
    prov = json.loads(judge.provenance(c))
    assert prov["model_id"] == SMOL and prov["engine"] == "llama-cpp" and len(prov["prompt_hash"]) == 16


def test_generate_judges_then_drops_near_duplicates(smol):
    """Two utterances with the same transcript and greedy decoding give the same QA pair and the same
    judge scores: the second is then a near duplicate of the first. Label-task rows are never judged
    or deduplicated (identical template rows are kept)."""
    cfg, engine = smol
    twin = {**ROW, "id": "u1b"}
    rows, rejects = Generate(cfg.model_copy(update={"qa_min_grounding": 0.0}), engine, "t").process([ROW, twin])
    rej = {r["id"]: r for r in rejects}
    kept = {r["id"]: r for r in rows}
    for rid in ("u1-qa-0", "u1b-qa-0", "u1-description-0", "u1b-description-0"):
        assert (rid in kept) != (rid in rej), rid
    for r in rows:
        if r["task"] in ("qa", "description"):
            assert r["judge_groundedness"] >= cfg.judge_min_score and r["judge_usefulness"] >= cfg.judge_min_score
            assert json.loads(r["judge_json"])["model_id"] == SMOL
        else:
            assert r["judge_groundedness"] is None and r["engine"] == "template"
    for r in rejects:
        if r["reason"] == "judge_low":
            assert "judge scores groundedness" in r["detail"] and r["raw"]
    # exactly one twin survives: the better judged one (ties: the smaller id); the other names it
    # (llama.cpp's reused KV cache can move a greedy judge score by one between the twins)
    assert ("u1-qa-0" in kept) != ("u1b-qa-0" in kept), rejects
    keep, drop = ("u1-qa-0", "u1b-qa-0") if "u1-qa-0" in kept else ("u1b-qa-0", "u1-qa-0")
    assert rej[drop]["reason"] == "near_duplicate" and f"near duplicate of {keep}" in rej[drop]["detail"]
    assert {r["id"] for r in rows if r["task"] == "asr"} == {"u1-asr-0", "u1b-asr-0"}
    assert not any(r["reason"] == "near_duplicate" and r["id"].split("-")[1] not in ("qa", "description") for r in rejects)
