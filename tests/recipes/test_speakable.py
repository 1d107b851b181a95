"""pipeline.recipes.speakable: written text -> spoken form for TTS, and what is unspeakable (no models, fast)."""
from __future__ import annotations

import pytest

from pipeline.recipes.speakable import Unspeakable, normalize_for_speech, speech_text
from pipeline.recipes.text import TextInstruction


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
