"""Rule filters for generated text: length, refusal, prompt leaks, language, label contradictions."""
import json

from pipeline.core.config import LLMConfig
from pipeline.core.prompts import render
from pipeline.quality.text_rules import (check_description, check_text, contradicts_labels, language_mismatch, leaked_prompt,
                                         prompt_ngrams)

T = "The museum opens at nine in the morning and closes at six on weekdays."
ROW = {"id": "u1", "source_path": "a.wav", "start_s": 0.0, "end_s": 4.2, "duration_s": 4.2, "reference_text": T,
       "gender": "female", "pitch_mean_hz": 215.0, "snr_db": 24.0, "asr_language": "en",
       "audio": {"bytes": b"", "path": "u1.flac"}}


def test_length_refusal_and_leak_rules():
    assert check_text("Too short.")[0] == "too_short"
    assert check_text("word " * 201)[0] == "too_long"
    assert check_text("I'm sorry, but as an AI I cannot hear audio at all.")[0] == "refusal"
    assert check_text("The transcript says the museum opens at nine.")[0] == "prompt_leak"
    assert check_text("A calm female voice says the museum opens at nine in the morning.") is None


def test_verbatim_prompt_copy_is_a_leak():
    system = render("desta_system.j2")
    grams = prompt_ngrams(system)
    # a reply that copies one long sentence of the system prompt word for word (whatever the prompt's wording is)
    sentence = max((x.strip() for x in system.replace("\n", " ").split(".")), key=lambda x: len(x.split()))
    assert len(sentence.split()) >= 10, sentence
    copied = f"Sure. {sentence}."
    assert leaked_prompt(copied, grams)[0] == "prompt_leak"
    assert "prompt" in leaked_prompt(copied, grams)[1]
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
