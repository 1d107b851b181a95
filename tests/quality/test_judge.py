"""The LLM judge: parsing its scores, and scoring on a real embedded model (SmolLM2: only the mechanics matter)."""
import json

import pytest

from pipeline.backends.llm import load_llm
from pipeline.core.config import LLMConfig
from pipeline.quality.judge import Candidate, Judge, parse_judge

T = "The museum opens at nine in the morning and closes at six on weekdays."
SMOL = "embedded:smollm2-135m-instruct-q4_1"


def test_parse_judge():
    s, fail = parse_judge('{"groundedness": 4, "usefulness": 2}')
    assert fail is None and (s.groundedness, s.usefulness) == (4, 2)
    assert parse_judge('{"groundedness": 9, "usefulness": 2}')[1][0] == "judge_malformed"
    assert parse_judge("five out of five")[1][0] == "judge_malformed"


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
    assert prov["model_id"] == SMOL and prov["engine"] == "llama-cpp-batched" and len(prov["prompt_hash"]) == 16


def test_probability_judge_reads_p_yes_from_the_first_token(smol):
    """Probability-based judging: P("Yes") / (P("Yes") + P("No")) of the first reply token, from the logits of
    the real model (no sampling); the same candidate twice gives nearly the same score."""
    from pipeline.quality.judge import yes_probabilities

    cfg, engine = smol
    cands = [Candidate("a", "qa", T, "When does the museum open?", "At nine in the morning.", 1),
             Candidate("b", "qa", T, "When does the museum open?", "At midnight on Sundays.", 1),
             Candidate("c", "description", "[00:00-00:04] " + T + " (Gender: Female, Duration: 4s)",
                       "What can you hear from the audio?", "A woman says the museum opens at nine.", 1)]
    p = yes_probabilities(engine, cands)
    assert p is not None and len(p) == 3 and all(0.0 < x < 1.0 for x in p)
    # alone vs batched with two others: llama-server decodes the slots together (and may reuse a cached prefix), so
    # the float sums differ a little; the score is the same to within a few hundredths, not bit for bit
    assert yes_probabilities(engine, cands[:1])[0] == pytest.approx(p[0], abs=0.05)
