"""QA pairs: parsing (salvaging a cut reply), grounding and the rules one pair must pass."""
from pipeline.core.config import LLMConfig
from pipeline.quality.qa import QAPair, check_qa, grounded, parse_qa, parse_qa_pairs

T = "The museum opens at nine in the morning and closes at six on weekdays."


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


def test_parse_qa_rules():
    assert parse_qa('{"question": "When does the museum open?", "answer": "At nine in the morning."}', T)[1] is None
    assert parse_qa('{"pairs": [{"question": "When does the museum open?", "answer": "At nine."}]}', T)[1] is None
    assert parse_qa('{"question": "When?"}', T)[1][0] == "malformed_json"
    assert parse_qa("not json at all", T)[1][0] == "malformed_json"
    assert parse_qa('{"question": "What is the capital of France?", "answer": "Paris is the capital."}', T)[1][0] == "ungrounded"
    assert parse_qa('{"question": "When does it open?", "answer": "I\'m sorry, I cannot answer."}', T)[1][0] == "refusal"
    assert parse_qa('{"question": "What does the speaker say in the transcript?", "answer": "nine"}', T)[1][0] == "prompt_leak"
