"""QA rules about what kind of answer a question asks for (pipeline.quality.checks runs them): a purpose
answered with a time, a what-question answered with a bare adverb, and "what is X?" about an X the transcript only
names. English word lists (other languages get the basic rules)."""
from __future__ import annotations

import re

from pipeline.quality import lexicon as lx
from pipeline.quality.retelling import imperative_verbs
from pipeline.quality.text_rules import Failure

COPULA = frozenset("is are was were be been being am 's means mean called named".split())
IDENTITY_Q = re.compile(r"^(?:what|which|who) (?:is|are|was|were) (?:the |a |an )?(?P<x>[^?]+?)\s*\?$", re.I)
PURPOSE_Q = re.compile(r"^why\b|\bfor\s*\?$|\bpurpose\b|\bwhat (?:is|was|are|were) the (?:point|aim)\b", re.I)
THING_Q = re.compile(r"^what (?!time\b|day\b|year\b|month\b|date\b|hour\b)", re.I)
REASON_Q = re.compile(r"^why\b", re.I)
# how long / how far: the unit after the answer's number must be one of time or length
EXTENT_Q = re.compile(r"^(?:\w+\s+)?how (long|far)\b", re.I)
_TIME_UNITS = "second seconds minute minutes hour hours day days week weeks month months year years night nights " \
              "decade decades century centuries moment moments while"
_LENGTH_UNITS = "metre metres meter meters kilometre kilometres kilometer kilometers km mile miles foot feet inch inches " \
                "yard yards centimetre centimetres centimeter centimeters cm mm step steps block blocks stop stops"
EXTENT_UNITS = {"long": frozenset(lx.stem(w) for w in f"{_TIME_UNITS} {_LENGTH_UNITS} page pages".split()),
                "far": frozenset(lx.stem(w) for w in f"{_LENGTH_UNITS} {_TIME_UNITS} walk drive ride".split())}
ADVERB_A = frozenset("early late soon quickly slowly prudently carefully often always never sometimes usually rarely "
                     "again already still yet now then later together alone".split())
LOCATIVE = frozenset("in on at under behind inside outside near beside between above below over next opposite across "
                     "around along beyond past beneath underneath among there it this that "
                     "happening wrong going".split())


def _without_article(words: list[str]) -> list[str]:
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    return words


def _span_at(words: list[str], span: list[str]) -> int:
    for i in range(len(words) - len(span) + 1):
        if words[i:i + len(span)] == span:
            return i
    return -1


def identity_of_a_named_span(q: str, a: str, transcript: str) -> Failure | None:
    """"What are the four of clubs?" -> "seven of hearts" (transcript: "Eight of spades, four of clubs, seven of
    hearts."): the question asks what something is, that something is copied from the transcript, and the
    transcript never says what it is: no copula links it to the answer ("Paris is the capital of France" does)."""
    m = IDENTITY_Q.match(q.strip())
    if not m:
        return None
    words, x, ans = lx.tokens(transcript), lx.tokens(m.group("x")), lx.tokens(a)
    if x and x[0] in LOCATIVE:
        return None  # "What is in the blue tin?" asks what is there, not what something is
    x = _without_article(x)
    if not x or not set(lx.content_stems(" ".join(x))) or len(x) > 8:
        return None
    i = _span_at(words, x)
    if i < 0:
        return None  # not copied from the transcript: the round trip judges it
    ans = _without_article(ans)
    j = _span_at(words, ans[:3])
    if j < 0:
        return None
    lo, hi = sorted((i + len(x), j)) if j > i else sorted((j + len(ans), i))
    # a copula that links the two ("Paris is the capital"), not one of a clause in between ("will be closed until")
    if COPULA & set(words[max(0, lo - 1):hi + 1]) and hi - lo <= 4:
        return None
    return "odd_question", f"asks what {' '.join(x)!r} is, but the transcript only names it"


NEGATION = frozenset("not no never nobody nothing none neither nor n't cannot won't don't doesn't didn't isn't aren't "
                     "wasn't weren't can't couldn't shouldn't wouldn't".split())


def answer_kind(q: str, a: str, transcript: str = "") -> Failure | None:
    """Answers of the wrong kind for the question word: a purpose (why / what ... for) answered with a time, or with
    a "to <verb>" the transcript never says ("What is the purpose of the ferry?" -> "to arrive" for "while the
    ferry is arriving"); a what-question (a thing) answered with a bare adverb ("What does the library open?" ->
    "early"); an answer that negates ("not", "never") where the transcript has no negation."""
    aw = lx.tokens(a)
    purpose = PURPOSE_Q.search(q)
    if purpose and aw and set(aw) <= (lx.TIME_A | lx.STOP | {w for w in aw if lx.numbers(w)}):
        return "answer_type", "a question about a purpose or reason answered with a time"
    if purpose and transcript and len(aw) >= 2 and aw[0] == "to" and f" to {aw[1]} " not in f" {' '.join(lx.tokens(transcript))} ":
        return "answer_type", f"a purpose {' '.join(aw[:2])!r} ... that the transcript does not state"
    if REASON_Q.search(q) and transcript and len(aw) >= 2 and aw[0] in ("because", "since", "as"):
        new = set(lx.content_stems(" ".join(aw[1:]))) - lx.stem_set(transcript)
        if new:
            return "invented", f"a reason the transcript does not give ({', '.join(sorted(new)[:4])})"
    m = EXTENT_Q.search(q)
    if m:
        unit = next((b for x, b in zip(aw, aw[1:]) if lx.numbers(x) and not lx.numbers(b) and b not in lx.STOP), None)
        if unit and lx.stem(unit) not in EXTENT_UNITS[m.group(1).lower()]:
            return "answer_type", f"a how-{m.group(1).lower()} question answered in {unit!r}"
    if THING_Q.search(q) and len(aw) == 1 and (aw[0] in ADVERB_A or (aw[0].endswith("ly") and len(aw[0]) > 5)):
        return "answer_type", f"a what-question answered with the adverb {aw[0]!r}"
    if transcript and NEGATION & set(aw) and not NEGATION & set(lx.tokens(transcript)):
        neg = next(w for w in aw if w in NEGATION)
        return "invented", f"the answer says {neg!r}; the transcript negates nothing"
    return None


CONDITION = re.compile(r"\b(?:if|unless|provided that|in case)\b([^,.;!?]*)", re.I)
QUESTION_FRAME = frozenset("like happen happens happened kind sort type".split())  # "what is X like?"
ASKS_CONDITION = re.compile(r"\b(?:if|unless|condition|conditions|in case|would|suppose|supposing|provided)\b", re.I)


def condition_as_fact(q: str, a: str, transcript: str) -> Failure | None:
    """"What is the weather like tomorrow?" -> "dry" for "If the weather stays dry tomorrow, we will ...": the
    question asks about the condition as if it were a fact, and the answer is taken from the if-clause. A question
    about the main clause ("When will we take the bicycles?" -> "tomorrow") or about the condition itself
    ("Under what condition ...?") is kept."""
    if ASKS_CONDITION.search(q):
        return None
    for m in CONDITION.finditer(transcript):
        cond = lx.stem_set(m.group(1))
        qc, ac = set(lx.content_stems(q)) - QUESTION_FRAME, set(lx.content_stems(a))
        if qc and ac and qc <= cond and ac <= cond:
            return "invented", f"states as a fact what the words only suppose ({m.group(0).strip()!r})"
    return None


def repeated_in_question(q: str) -> Failure | None:
    """"What is the traffic light at the second traffic light?": a content word asked about twice."""
    stems = lx.content_stems(q)
    twice = sorted({w for w in stems if stems.count(w) > 1 and not w.isdigit()})
    if twice:
        return "odd_question", f"the question names {twice[0]!r} twice"
    return None


WHO_Q = re.compile(r"^who (?:(?:is|was|are|were|will|would|should|can|could|must|did|does|do|has|have|had) )?(?P<rest>.+?)\s*\?$", re.I)
_SUBJECTS = frozenset("i you he she we they it my your his her our their".split())  # another verb's subject
_AUX = frozenset("is was are were will would should can could must did does do has have had not also still then "
                 "just never always often 'll 's".split())


def subject_of_another_verb(q: str, a: str, transcript: str) -> Failure | None:
    """"Who should drink more water?" -> "The doctor" for "The doctor said I should drink more water": the answer
    stands in the words before the question's verb, but another subject ("I") stands between them."""
    m = WHO_Q.match(q.strip())
    if not m:
        return None
    rest = lx.tokens(m.group("rest"))
    verb = next((w for w in rest if w not in lx.STOP and w not in _AUX), None)
    words, ans = lx.tokens(transcript), _without_article(lx.tokens(a))
    if not verb or not ans or lx.stem(verb) in {lx.stem(x) for x in ans}:
        return None
    i = _span_at(words, ans[-2:] if len(ans) > 1 else ans)
    at = [k for k, w in enumerate(words) if lx.stem(w) == lx.stem(verb)]
    if i < 0 or not at:
        return None
    after = [k for k in at if k > i]
    if not after:
        return None
    between = words[i + min(len(ans), 2):after[0]]
    other = [w for w in between if w in _SUBJECTS]
    if other:
        return "answer_elsewhere", (f"{' '.join(ans)!r} is not who {verb!r}s in the words: {other[0]!r} stands "
                                    f"between them")
    return None


PLACE_PP = re.compile(r"\b(?:in|at|on|into|inside|from|near|behind|under) (?:the|a|an|his|her|their|our|my|your) "
                      r"(?P<noun>[a-z]+)(?=\s*\?|\s)", re.I)


_IDIOM = frozenset("end beginning start way meantime moment past future case fact general total front middle first "
                   "last time".split())
HOW_MANY = re.compile(r"^(?:\w+\s+)?how many (?P<noun>[a-z]+)\b", re.I)


def counted_other_thing(q: str, a: str, transcript: str) -> Failure | None:
    """"How many tickets are there?" -> "Twenty" for "... cost twenty pounds each": the answer's number counts
    another thing in the words (the noun right after it there is not the one asked about)."""
    m = HOW_MANY.search(q.strip())
    if not m:
        return None
    asked = lx.stem(m.group("noun").lower())
    vals = lx.numbers(a)
    words = lx.tokens(transcript)
    for k, w in enumerate(words[:-1]):
        if lx.numbers(w) and lx.numbers(w) & vals:
            nxt = words[k + 1]
            if lx.numbers(nxt) or nxt in lx.STOP:
                continue
            if lx.stem(nxt) != asked and asked not in {lx.stem(x) for x in lx.tokens(a)}:
                return "answer_type", f"{w!r} counts {nxt!r} in the words, not {m.group('noun')!r}"
    return None


# a time the question may set its scene with only when the words name it ("What is the weather like today?" for
# "If the weather stays dry tomorrow ...")
TIME_SETTING = frozenset("today tonight yesterday tomorrow weekend weekends morning mornings afternoon afternoons evening "
                         "evenings night nights monday tuesday wednesday thursday friday saturday sunday january february "
                         "march april june july august september october november december spring summer autumn "
                         "winter".split())


def invented_setting(q: str, transcript: str) -> Failure | None:
    """"What did the brother fix in the kitchen?" for "... fixed the leaking tap in the bathroom": the question
    sets its scene with a place the words never name; "What is the weather like today?" for "... dry tomorrow":
    or with a time they never name."""
    said = lx.stem_set(transcript)
    for m in PLACE_PP.finditer(q):
        noun = m.group("noun").lower()
        if noun not in lx.STOP | _IDIOM | lx.TIME_A and lx.stem(noun) not in said and not lx.numbers(noun):
            return "question_ungrounded", f"the question places it {m.group(0).strip()!r}; the words name no {noun!r}"
    for w in lx.tokens(q):
        if w in TIME_SETTING and lx.stem(w) not in said:
            return "question_ungrounded", f"the question sets it {w!r}; the words name no {w!r}"
    return None


# "When does the dentist call?": an auxiliary, a noun phrase as the subject (one adjective at most), then the verb
SUBJECT_VERB_Q = re.compile(r"\b(?:does|do|did|will|would|can|could|should|must)\s+(?:the|a|an|my|your|his|her|our|their)\s+"
                            r"(?P<np>(?:[a-z]+\s+)?[a-z]+)\s+(?P<verb>[a-z]+)\b", re.I)
# verbs whose object can be their subject ("bake the bread" -> "the bread bakes")
ERGATIVE = frozenset(lx.stem(w) for w in "bake cook boil fry roast simmer steam melt freeze dry cool warm heat open close "
                     "shut start begin stop end finish break change move turn roll grow ring burn drain rise sink spin "
                     "shake fill empty set sell read wash load run play show print".split())
_PEOPLE = frozenset("listener speaker person people reader user caller visitor passenger".split())


def object_as_subject(q: str, transcript: str) -> Failure | None:
    """"When does the dentist call?" for "... remind me to call the dentist": the question makes the doer of a verb
    what the words have it done to (every time the verb comes in the words, the noun follows it as its object), or
    gives a noun the listener's action ("What traffic light will the bakery turn?" for "Turn left at the second
    traffic light, and the bakery ...": the words tell the listener to turn, and the bakery is not what is turned).
    Verbs whose object can be their subject ("How long should the bread bake?" for "Bake the bread ...") pass."""
    m = SUBJECT_VERB_Q.search(q)
    if not m:
        return None
    np_words, verb_w = m.group("np").lower().split(), m.group("verb").lower()
    noun_w = np_words[-1]
    if verb_w in lx.STOP or noun_w in lx.STOP or noun_w in _PEOPLE or verb_w in ("be", "been", "being"):
        return None
    noun, verb = lx.stem(noun_w), lx.stem(verb_w)
    words = lx.tokens(transcript)
    at = [k for k, w in enumerate(words) if lx.stem(w) == verb]
    if not at or noun == verb:
        return None

    def _object(k: int) -> bool:
        nxt = [w for w in words[k + 1:k + 4] if w not in lx.STOP]
        return bool(nxt) and lx.stem(nxt[0]) == noun

    def _subject(k: int) -> bool:
        return noun in {lx.stem(w) for w in words[max(0, k - 3):k]}

    if any(_subject(k) for k in at):
        return None
    if verb in {lx.stem(v) for v in imperative_verbs(transcript)} and not any(_object(k) for k in at):
        return "answer_elsewhere", f"the words tell the listener to {verb_w!r}; the question has the {noun_w!r} do it"
    if verb not in ERGATIVE and all(_object(k) for k in at):
        return "answer_elsewhere", (f"in the words {noun_w!r} comes after {verb_w!r} as its object every time; the "
                                    f"question makes it the subject")
    return None



_POSSESSIVE = frozenset("my your his her our their its".split())
_WHO_SUBJECT_Q = re.compile(r"^who (?:(?:was|were|is|are|has|had|have) )?(?P<verb>[a-z]+)\b(?P<rest>[^?]*)\?$", re.I)


def who_answer_is_object(q: str, a: str, transcript: str) -> Failure | None:
    """"Who lent the ladder?" -> "The gutters" for "Our neighbour lent us his ladder so that we could clean the
    gutters": a who-question about the doer of a verb, answered with words that stand only after that verb in the
    transcript (its object, or another clause), never before it and never after "by" (the passive's doer)."""
    m = _WHO_SUBJECT_Q.match(q.strip())
    if not m or m.group("verb").lower() in lx.STOP or m.group("verb").lower() in _AUX:
        return None
    verb = lx.stem(m.group("verb").lower())
    words = lx.tokens(transcript)
    ans = [w for w in _without_article(lx.tokens(a)) if w not in _POSSESSIVE]
    if not ans or verb in {lx.stem(w) for w in ans}:
        return None
    stems, first = [lx.stem(w) for w in words], lx.stem(ans[0])
    at_verb = [k for k, st in enumerate(stems) if st == verb]
    at_ans = [k for k, st in enumerate(stems) if st == first]  # "father" for "father's"
    if not at_verb or not at_ans:
        return None
    # the answer before the verb (its subject), or after "by" (a passive's doer): fine
    if any(k < at_verb[-1] or "by" in words[at_verb[0] + 1:k] for k in at_ans):
        return None
    return "answer_elsewhere", (f"{' '.join(ans)!r} stands after {m.group('verb')!r} in the words (what is acted on, "
                                f"not who acts)")


# verbs with two objects: "What did they name the baby?", "What did she give the dog?" are well formed
_DITRANSITIVE = frozenset(lx.stem(w) for w in "give gave given tell told show showed shown send sent offer offered name "
                          "named call called teach taught lend lent ask asked pay paid bring brought buy bought make made "
                          "cost cook cooked leave left owe owed promise promised hand handed feed fed serve served wish wished "
                          "sell sold charge charged award awarded grant granted deny denied fetch fetched get got".split())
_WHAT_DID_X_VERB_OBJ = re.compile(
    r"^what (?:did|does|do|will|would|should|can|could|must) (?:(?:the|my|your|his|her|our|their) [a-z]+|he|she|they|we|you|i|it) (?P<verb>[a-z]+) "
    r"(?:the|a|an|his|her|their|our|my|your|its) [a-z]+\s*\?$", re.I)


def what_with_full_object(q: str) -> Failure | None:
    """"What did the farmers harvest the wheat?": the question's verb already has its object, so the question
    word has no place in the sentence (a garbled question of a small model). Verbs that take two objects pass."""
    m = _WHAT_DID_X_VERB_OBJ.match(q.strip())
    if not m or m.group("verb").lower() in lx.STOP or lx.stem(m.group("verb").lower()) in _DITRANSITIVE:
        return None
    return "malformed_question", f"the verb {m.group('verb')!r} already has its object: {q[:60]!r}"


_WH_DOES_X_VERB = re.compile(r"^(?P<wh>where|when|how often|how long|how) (?:does|do|did|will|can|could|should|would) "
                             r"(?P<subj>(?:(?:the|my|your|his|her|our|their|a|an) )?[a-z]+) (?P<verb>[a-z]+)(?: (?:to|in|at|on|up|out))?\s*\?$", re.I)
_DETERMINERS = _POSSESSIVE | frozenset("the a an this that these those some".split())
_NOT_OBJECTS = frozenset("away back home here there today tomorrow tonight yesterday well hard fast down off over "
                         "around through across along past".split())


def dropped_object(q: str, transcript: str) -> Failure | None:
    """"Where does the grandmother grow?" for "My grandmother grows tomatoes, beans and sunflowers in the small garden":
    the question ends at a verb that, in the words, acts on something (an object follows it), so the question no
    longer says what is grown, or makes its subject grow. A verb used without an object in the words passes."""
    m = _WH_DOES_X_VERB.match(q.strip())
    if not m:
        return None
    verb = lx.stem(m.group("verb").lower())
    subj = lx.tokens(m.group("subj"))
    if m.group("verb").lower() in lx.STOP or verb in {lx.stem(w) for w in subj}:
        return None
    words = lx.tokens(transcript)
    stems = [lx.stem(w) for w in words]
    uses = [k for k, st in enumerate(stems) if st == verb]
    if not uses:
        return None
    if verb in ERGATIVE and any(lx.stem(subj[-1]) in stems[k + 1:k + 4] for k in uses):
        return None  # "How long should the bread bake?": the object of "bake the bread" can be its subject

    def object_follows(k: int) -> bool:
        if k + 1 >= len(words):
            return False
        w = words[k + 1]
        return w in _DETERMINERS or not (w in lx.STOP or w in ADVERB_A or w in lx.TIME_A or w.endswith("ly")
                                         or lx.numbers(w) or w in _NOT_OBJECTS)

    objects = [k for k in uses if object_follows(k)]
    if len(objects) == len(uses):
        return "malformed_question", (f"the question ends at {m.group('verb')!r}, which in the words acts on "
                                      f"{' '.join(words[objects[0] + 1:objects[0] + 3])!r}: it leaves out what")
    return None


__all__ = ["answer_kind", "condition_as_fact", "counted_other_thing", "dropped_object", "identity_of_a_named_span",
           "invented_setting", "object_as_subject", "repeated_in_question", "subject_of_another_verb",
           "what_with_full_object", "who_answer_is_object"]
