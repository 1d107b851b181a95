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


__all__ = ["added_clause", "antonym_of_the_words", "imperative_verbs", "listener_action_as_speaker",
           "negated_retelling", "question_as_statement", "swapped_pronoun"]


# where a description adds a clause of its own: a cause, a relative clause, a coordinated or a further sentence
_ADDED = re.compile(r"(?:[.;:!?]\s+|,\s*|\s+)(?=(?:because|since|as|so that|so|which|who|whose|while|and|but|although|"
                    r"though|after|before|when|where)\b)|(?<=[.;!?])\s+", re.I)


def added_clause(transcript: str, seed: str, description: str) -> Failure | None:
    """A clause the description adds that says nothing of the words or the seed: at least two content words of its
    own and none from the transcript or the seed ("... whether the pharmacy is open, because his daughter has a
    fever"). The description's first clause (how it frames the clip: "A woman gives a cooking tip") is not
    checked; words of describing speech (voice, tone, pace, noise) are not content."""
    src = lx.stem_set(f"{transcript} {seed}")
    parts = [p for p in _ADDED.split(description) if p and p.strip()]
    for part in parts[1:]:
        words = lx.content_stems(part, lx.DESCRIBING)
        new = [w for w in words if w not in src]
        if len(new) >= 2 and len(new) == len(words):
            return "invented", f"adds {part.strip()[:70]!r}, which neither the transcript nor the seed says"
    return None


# opposites a retelling may not swap: each line "forms of one | forms of the other" (surface forms, no stemming)
_OPPOSITES = """open opens opened opening | close closes closed closing shut shuts
early earlier | late later
before | after
survive survives survived surviving | die dies died dying dead
win wins won winning | lose loses lost losing
arrive arrives arrived arriving arrival | depart departs departed departing departure
start starts started starting begin begins began beginning | finish finishes finished finishing
full | empty
cheap cheaper | expensive dear
more | less fewer
always | never
increase increases increased | decrease decreases decreased fall falls fell
rise rises rose risen | fall falls fell fallen
hot hotter warm warmer | cold colder cool cooler
first | last
north northern | south southern
east eastern | west western
accept accepts accepted | refuse refuses refused reject rejects rejected
remember remembers remembered | forget forgets forgot forgotten
buy buys bought | sell sells sold
lend lends lent | borrow borrows borrowed
easy easier | difficult hard harder
heavy heavier | light lighter
wet | dry
inside indoors | outside outdoors
above | below
top | bottom
upstairs | downstairs
left | right
same | different
new newer | old older
young younger | old older
add adds added | remove removes removed
pass passes passed | fail fails failed
true | false
allowed permitted | forbidden banned prohibited
sunny | rainy cloudy
found | lost
success successful | failure failed""".splitlines()
_OPPOSITE_OF: dict[str, frozenset] = {}  # word -> the forms of its opposites
_FORMS_OF: dict[str, frozenset] = {}  # word -> the forms on its own side
for _line in _OPPOSITES:
    _a, _b = (frozenset(x.split()) for x in _line.split("|"))
    for _side, _other in ((_a, _b), (_b, _a)):
        for _w in _side:
            _OPPOSITE_OF[_w] = _OPPOSITE_OF.get(_w, frozenset()) | _other
            _FORMS_OF[_w] = _FORMS_OF.get(_w, frozenset()) | _side


def antonym_of_the_words(transcript: str, text: str) -> Failure | None:
    """The retelling (a description, or a QA answer) says the opposite of a word of the transcript ("most of them
    survived" -> "all of them died", "closes early" -> "closes late") and never the word itself."""
    said = set(lx.tokens(transcript))
    for w in lx.tokens(text):
        if w not in _OPPOSITE_OF or _FORMS_OF[w] & said:  # the words say it too ("opens" ... "opening")
            continue
        opp = sorted(_OPPOSITE_OF[w] & said)
        if opp:
            return "contradicts_transcript", f"says {w!r} where the words say {opp[0]!r}"
    return None
