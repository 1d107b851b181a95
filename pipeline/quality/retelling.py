"""Description rules about retelling the words faithfully (pipeline.quality.checks runs them): a person of the
words given the other gender's pronoun, and a question reported as a statement. English word lists."""
from __future__ import annotations

import re

from pipeline.quality import lexicon as lx
from pipeline.quality.text_rules import Failure

_HE, _SHE = frozenset("he him his himself".split()), frozenset("she her hers herself".split())


def swapped_pronoun(transcript: str, description: str) -> Failure | None:
    """The description retells the transcript with the other gender's pronoun for the same person: the transcript
    says "she practised the piano", the description of a man's voice "he practised the piano". The speaker's own
    gender is the seed's business; the people the words are about are the transcript's."""
    said, desc = lx.tokens(transcript), lx.tokens(description)
    told = {(w, lx.stem(n)) for w, n in zip(desc, desc[1:]) if w in _HE | _SHE}
    for w, n in zip(said, said[1:]):
        if w not in _HE | _SHE or n in lx.STOP or (w, lx.stem(n)) in told:
            continue
        o = next((o for o in (_SHE if w in _HE else _HE) if (o, lx.stem(n)) in told), None)
        if o:
            return "contradicts_transcript", f"the transcript says {w!r} {n!r}, the description {o!r} {n!r}"
    return None


ASKING = re.compile(r"\b(?:ask|asks|asked|asking|wonder\w*|question\w*|request\w*|inquir\w*|enquir\w*|wants? to know|"
                    r"would like to know)\b", re.I)
SAYS_THAT = re.compile(r"\b(?:says|said|states|stated|explains|explained|mentions|mentioned|announces|tells \w+) that\b", re.I)


def question_as_statement(transcript: str, description: str) -> Failure | None:
    """The words are one question ("Could you remind me to call the dentist?") and the description reports a
    statement ("says that she could remind herself to call the dentist"): what was said is turned around."""
    t = transcript.strip()
    if not t.endswith("?") or re.search(r"[.!]\s", t) or ASKING.search(description) or not SAYS_THAT.search(description):
        return None
    return "contradicts_transcript", "the speaker asks a question; the description reports it as a statement (says that ...)"


NEGATED = re.compile(r"\b(?:not|never|cannot|nobody|nothing|no longer|no one)\b|n't\b", re.I)
VOICE_NEGATION = re.compile(r"\b(?:not|never|n't)\s+(?:\w+\s+){0,2}?(?:noisy|noise|clear|clean|loud|quiet|rushed|hurried|"
                            r"fast|quick|slow|high|low|deep|sure|certain|clearly|audible)\b", re.I)


def negated_retelling(transcript: str, description: str) -> Failure | None:
    """The description retells a negation ("has been cancelled and will not be rescheduled") the words never say
    ("has been moved to Thursday"); negations about the voice or the recording ("not noisy") do not count."""
    if NEGATED.search(transcript):
        return None
    m = NEGATED.search(VOICE_NEGATION.sub(" ", description))
    if m:
        return "contradicts_transcript", f"the description says {m.group(0)!r}; the words negate nothing"
    return None


_OBJECT = frozenset("the a an your it them this that these those some all up down out in off on back left right me us".split())
_MODAL = frozenset("will can could should must may might would 'll shall".split())
_SPEAKER = frozenset("speaker man woman he she narrator guide announcer voice person".split())
_REPORTING = frozenset("says said say tells told tell asks asked ask explains explained explain that to telling asking "
                       "saying explaining invites invited advises advised urges urged directs directed instructs "
                       "instructed reminds reminded describes described gives giving recommends suggests".split())


def imperative_verbs(transcript: str) -> set[str]:
    """Stems of the verbs the words tell the listener to do: a clause (at the start, after punctuation, "and" or
    "then") that opens with a verb-like word and its object ("Preheat the oven", "look to your right"), and the verb
    after "you" ("you will see")."""
    t = transcript.lower()
    verbs = set()
    for clause in re.split(r"[.!?;:,]\s*|\s(?:and|then)\s", t):
        w = lx.tokens(clause)
        if len(w) >= 2 and w[0] not in lx.STOP and not w[0].endswith("s") and (w[1] in _OBJECT or lx.numbers(w[1])):
            verbs.add(lx.stem(w[0]))
    w = lx.tokens(t)
    for i, x in enumerate(w[:-1]):
        if x == "you":
            v = w[i + 2] if w[i + 1] in _MODAL and i + 2 < len(w) else w[i + 1]
            if v not in lx.STOP:
                verbs.add(lx.stem(v))
    return verbs


def listener_action_as_speaker(transcript: str, description: str) -> Failure | None:
    """The words tell the listener what to do ("When you reach the top of the hill, look to your right") and the
    description has the speaker do it ("A woman with a high voice reaches the top of the hill, looks to her right"):
    a verb of the words' listener, in the third person, after a speaker reference and no reporting verb."""
    verbs = imperative_verbs(transcript)
    if not verbs:
        return None
    for sentence in re.split(r"(?<=[.!?])\s+", description):
        d = lx.tokens(sentence)
        for i, w in enumerate(d):
            if (w.endswith("s") or w.endswith("ed")) and lx.stem(w) in verbs and _SPEAKER & set(d[:i]) \
                    and not _REPORTING & set(d[:i]):
                return "contradicts_transcript", (f"the speaker {w!r} in the description; the words tell the listener "
                                                  f"to {lx.stem(w)}")
    return None


__all__ = ["imperative_verbs", "listener_action_as_speaker", "negated_retelling", "question_as_statement",
           "swapped_pronoun"]
