"""Rule checks for one generated candidate (a DeSTA2 description or a QA pair), cheapest first, no model.

A candidate carries what the generator saw: the transcript, the seed description (transcript plus the
measured attributes, parsed back here with ``parse_seed``), the instruction (``prompt``) and the
``response``; optionally the engine's ``finish_reason`` and, for ASR pseudo-labels, ``text_source`` and
``asr_avg_logprob``. ``rule_check`` returns the first failure ``(reason, detail)`` or None, and fills
``scores`` with the measured values (repetition, compression ratio, prompt similarity, grounding, ...).

The LLM checks (QA round trip, judge) come after these, in ``pipeline.stages.llm.filter``; the llm stage
and the ``filter`` command both run them through that one function.
"""
from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass, field

from pipeline.core.config import LLMConfig
from pipeline.core.text import normalize, word_count
from pipeline.quality import lexicon as lx
from pipeline.quality.question_types_i18n import answer_type as answer_type_i18n
from pipeline.quality.question_kinds import (answer_kind, condition_as_fact, counted_other_thing, dropped_object,
                                             identity_of_a_named_span,
                                             invented_setting, object_as_subject, repeated_in_question,
                                             subject_of_another_verb, what_with_full_object, who_answer_is_object)
from pipeline.quality.retelling import (added_clause, antonym_of_the_words, imperative_verbs, listener_action_as_speaker, negated_retelling,
                                        question_as_statement, swapped_pronoun)
from pipeline.quality.text_rules import LEAK, REFUSAL, Failure, language_mismatch

# reworded prompt text and meta talk about the generation task (the listener never saw any of it)
META = re.compile(r"\b(?:not (?:being )?address(?:ed|ing) (?:to )?you|not (?:talking|speaking|directed|meant) (?:to|for) you|"
                  r"(?:never|do not|don't) (?:obey|follow|answer|carry out) (?:her|his|their|its|the|them|it)\b|obey them|"
                  r"from the words|not from the voice|(?:recorded|measured|listed|given|provided) attributes?|"
                  r"attributes? (?:of|in|listed|given|marked)|the (?:written |given |provided )?description (?:says|states|"
                  r"mentions|lists|gives)|as described|the seed|brackets|timestamp|the instructions?|the user'?s? question)\b")
SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
TERMINAL = re.compile(r"[.!?…。！？]\s*['\"”’)\]」』]*\s*$")
DANGLING = frozenset("the a an of to and or with at in on for by from that his her their your my its this these "
                     "whose which but because".split())
# ... that may end a finished sentence as the particle of a phrasal verb ("plug it back in.", "turn it on.")
PARTICLES = frozenset("in on off up out by over down along through away around".split())
ABBREV = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|St|Prof|Mt|Jr|Sr)\.\s+")
ALLOWED_CAPS = frozenset({"i", "english", "ok", "okay", "audio", "speaker"})


@dataclass
class Subject:
    """One candidate as the checks see it."""
    id: str
    task: str  # "description" | "qa"
    transcript: str
    seed_description: str
    prompt: str
    response: str
    finish_reason: str | None = None
    text_source: str | None = None
    asr_avg_logprob: float | None = None
    language: str | None = None
    scores: dict = field(default_factory=dict)


@dataclass
class Seed:
    duration_s: float | None = None
    attrs: dict = field(default_factory=dict)  # lower-case name -> value ("gender" -> "male", ...)


_SEED = re.compile(r"^\s*\[[\d:.]+-[\d:.]+\]\s*(?P<text>.*?)\s*\((?P<attrs>[^()]*(?:\([^()]*\)[^()]*)*)\)\s*$", re.S)


def parse_seed(seed: str) -> Seed:
    """Attributes of a DeSTA2 seed "[00:00-00:05] text (Gender: Male, Emotion: happy (from the words), ...)"."""
    m = _SEED.match(seed or "")
    if not m:
        return Seed()
    attrs = {}
    for part in re.split(r",\s*(?=[A-Z][A-Za-z ]+:)", m.group("attrs")):
        if ":" in part:
            k, v = part.split(":", 1)
            attrs[k.strip().lower()] = v.strip().lower()
    dur = None
    if "duration" in attrs:
        d = re.match(r"([\d.]+)", attrs["duration"])
        dur = float(d.group(1)) if d else None
    return Seed(dur, attrs)


def prompt_sentences(*texts: str) -> list[set[str]]:
    """Content stems of each sentence of the fixed prompt wording (leak detection by similarity)."""
    out = []
    for t in texts:
        for s in SENTENCE.split(t or ""):
            st = set(lx.content_stems(s, lx.DESCRIBING))
            if len(st) >= 3:
                out.append(st)
    return out


# ---- generic text checks ----------------------------------------------------------------------------
def truncation(s: Subject) -> Failure | None:
    if (s.finish_reason or "").lower() == "length":
        return "truncated", "the engine stopped at max_tokens (finish_reason=length)"
    text = s.response.strip()
    words = lx.tokens(text)
    if words and words[-1] in DANGLING and not (words[-1] in PARTICLES and TERMINAL.search(text)):
        return "truncated", f"ends on {words[-1]!r}: cut off mid-sentence"
    if s.task == "description" and len(words) >= 4 and not TERMINAL.search(text):
        return "truncated", f"no sentence end: ...{text[-30:]!r}"
    return None


def four_grams(text: str) -> Counter:
    w = normalize(text).split()
    return Counter(tuple(w[i:i + 4]) for i in range(len(w) - 3))


def repetition(s: Subject, cfg: LLMConfig) -> Failure | None:
    text = s.response
    sents = [normalize(x) for x in SENTENCE.split(text) if len(x.split()) >= 4]
    dup = {x for x in sents if sents.count(x) > 1}
    grams = four_grams(text)
    n = sum(grams.values())
    share = 1 - len(grams) / n if n else 0.0
    raw = text.encode()
    ratio = len(raw) / max(1, len(zlib.compress(raw))) if len(raw) >= 100 else 1.0
    s.scores.update(repeated_4gram_share=round(share, 3), compression_ratio=round(ratio, 3))
    if dup:
        return "repetition", f"the same sentence {len(dup)}x repeated: {sorted(dup)[0][:60]!r}"
    if s.task == "description":  # a phrase said twice ("in a clean recording, ... in a clean recording") that the
        tgrams = four_grams(s.transcript)  # transcript does not repeat
        again = sorted(g for g, k in grams.items() if k > 1 and tgrams[g] < 2)
        if again:
            return "repetition", f"the phrase {' '.join(again[0])!r} is said twice"
    if share > cfg.max_repeated_ngram_share:
        return "repetition", f"{share:.0%} of its word 4-grams are repeats (> {cfg.max_repeated_ngram_share:.0%})"
    if ratio > cfg.max_compression_ratio:
        return "repetition", f"zlib compression ratio {ratio:.2f} > {cfg.max_compression_ratio}"
    return None


def example_words(*prompts: str) -> frozenset[str]:
    """Content stems of the few-shot examples in the prompts (what follows the first "Example")."""
    out: set[str] = set()
    for p in prompts:
        i = p.find("Example")
        if i >= 0:
            out |= set(lx.content_stems(re.sub(r"[{}\[\]\"]|question|answer|pairs|example|transcript|voice", " ",
                                               p[i:], flags=re.I), lx.DESCRIBING))
    generic = {"duration", "gender", "snr", "pitch", "speed", "hear", "befor", "clos", "after", "about", "main", "often",
               "today", "leav", "send", "sent"}  # common words: only the examples' own nouns count
    return frozenset(w for w in out if len(w) >= 3 and not any(c.isdigit() for c in w) and w not in generic)


def leak(s: Subject, cfg: LLMConfig, sentences: list[set[str]], example_stems: frozenset = frozenset()) -> Failure | None:
    text = s.response + ("" if s.task == "description" else " " + s.prompt)
    low = text.lower()
    src = lx.stem_set(s.transcript)
    for pat in (LEAK, META):
        m = pat.search(low)
        if m and m.group(0).lower() not in s.transcript.lower():
            return "prompt_leak", f"prompt wording in the output: {m.group(0)!r}"
    own = set(lx.content_stems(text, lx.DESCRIBING)) - src - lx.stem_set(s.seed_description)
    copied = sorted(own & example_stems)
    if len(copied) >= 2 or (s.task == "qa" and copied):
        return "prompt_leak", f"copies the prompt's few-shot example: {' '.join(copied[:5])!r}"
    best, where = 0.0, ""
    for sent in SENTENCE.split(text):
        st = set(lx.content_stems(sent, lx.DESCRIBING)) - src
        if len(st) < 4:
            continue
        for p in sentences:
            sim = len(st & p) / len(st)
            if sim > best:
                best, where = sim, sent.strip()
    s.scores["prompt_similarity"] = round(best, 3)
    if best >= cfg.leak_similarity:
        return "prompt_leak", f"sentence {best:.0%} like the prompt's own wording: {where[:80]!r}"
    return None


def voice_of_assistant(s: Subject) -> Failure | None:
    """A description is in the third person: an 'I'/'me' that the transcript does not have, or an
    assistant's 'Sure!', means the model answered (or obeyed) the transcript instead of describing it."""
    low = s.response.lower()
    if ASSISTANT := lx.ASSISTANT_OPENER.search(s.response):
        if ASSISTANT.group(1).lower() not in s.transcript.lower():
            return "obeys_transcript", f"answers as the assistant: {ASSISTANT.group(0).strip()!r}"
    said = set(lx.tokens(s.transcript))
    for m in lx.FIRST_PERSON.finditer(low):
        if m.group(1) not in said:
            return "obeys_transcript", f"speaks in the first person ({m.group(1)!r}): not a description of the clip"
    # the speaker's own "I"/"me" is fine inside a quotation, wrong in reported speech ("says that she could remind me")
    unquoted = re.sub(r"[\"“][^\"”]*[\"”]", " ", low)
    m = lx.FIRST_PERSON.search(unquoted) or lx.FIRST_PLURAL.search(unquoted)
    if m:
        return "first_person", f"reported speech keeps the speaker's {m.group(1)!r} outside a quotation"
    m = lx.SECOND_PERSON.search(unquoted)
    if m and m.group(1) not in said:
        return "obeys_transcript", f"addresses the listener ({m.group(1)!r}): a reply, not a description of the clip"
    if not lx.SPEAKER_REF.search(unquoted):
        return "obeys_transcript", "names no speaker or voice: a restatement or reply, not a description of the clip"
    return None


# ---- consistency with the seed's attributes -----------------------------------------------------------
def _outside(pattern: re.Pattern, text: str, transcript: str) -> re.Match | None:
    """First match in text that is not just the transcript's own words."""
    tl = transcript.lower()
    for m in pattern.finditer(text):
        if m.group(0) not in tl:
            return m
    return None


def consistency(s: Subject, seed: Seed) -> Failure | None:
    """Every voice / recording attribute the response states must agree with the seed (and be there)."""
    text = s.response.lower()
    tr = s.transcript
    a = seed.attrs
    gender = a.get("gender", "")
    other = lx.FEMALE_W if gender == "male" else lx.MALE_W if gender == "female" else None
    if other is not None and (m := _outside(other, text, tr)):
        return "contradicts_seed", f"says {m.group(0)!r} but the seed gender is {gender}"
    if not gender and (m := _outside(re.compile(r"\b(?:man|woman|male|female|boy|girl|lady|gentleman)\b"), text, tr)):
        return "unsupported_attribute", f"says {m.group(0)!r} but the seed has no gender"
    for attr, bands, middle in (("pitch", (("high", lx.PITCH_HIGH), ("low", lx.PITCH_LOW)), lx.PITCH_MID),
                                ("speaking speed", (("fast", lx.SPEED_FAST), ("slow", lx.SPEED_SLOW)), lx.SPEED_NORMAL)):
        value = a.get(attr, "")  # a band the seed does not have, or "normal" when the seed has a band
        hits = [m for label, pat in bands if (m := _outside(pat, text, tr)) and value and label not in value]
        if not hits and value and "normal" not in value and (m := _outside(middle, text, tr)):
            hits = [m]
        if hits:
            return "contradicts_seed", f"says {hits[0].group(0)!r} but the seed {attr} is {value!r}"
    snr = a.get("snr", "")
    if snr:
        q = snr.split(" (")[0]
        clean = _outside(lx.CLEAN_W, text, tr)
        masked = lx.CLEAN_W.sub(" ", text)
        noisy = [m for m in lx.NOISY_W.finditer(masked) if m.group(0) not in tr.lower()]
        if q in ("noisy", "very noisy") and clean:
            return "contradicts_seed", f"says {clean.group(0)!r} but the seed recording is {snr!r}"
        if q == "clean" and noisy:
            return "contradicts_seed", f"says {noisy[0].group(0)!r} but the seed recording is {snr!r}"
        if q == "fairly clean" and any(not m.group(1) for m in noisy):
            return "contradicts_seed", f"says {noisy[0].group(0)!r} but the seed recording is {snr!r}"
    f = emotion(s, a.get("emotion", ""))
    if f:
        return f
    if seed.duration_s:
        for m in re.finditer(r"\b([\d.]+|[a-z]+)[- ](second|minute|hour)s?\b[- ]?(?:long|clip|recording|audio)?", text):
            if m.group(0) in tr.lower():
                continue
            v = lx.number_value(m.group(1)) if not m.group(1).replace(".", "").isdigit() else float(m.group(1))
            if v is None:
                continue
            secs = v * {"second": 1, "minute": 60, "hour": 3600}[m.group(2)]
            if abs(secs - seed.duration_s) > max(1.5, 0.25 * seed.duration_s):
                return "contradicts_seed", f"says {m.group(0)!r} but the clip is {seed.duration_s:.0f} s long"
    return None


_VOICE_CONTEXT = re.compile(r"\b(?:voice|tone|sound\w*|speak\w*|spoke\w*|says?|said|talk\w*|deliver\w*|read\w*|asks?|"
                            r"announc\w*|explain\w*|mention\w*|shout\w*|manner)\b")


def emotion(s: Subject, seed_emotion: str) -> Failure | None:
    """A measured emotion: no other emotion may be claimed. One read from the words ("(from the words)"):
    it may be the mood of what is said, not how the voice sounds. None: no claim about the voice's emotion."""
    text = s.response.lower()
    words = re.findall(r"[a-z'-]+", text)
    said = set(lx.tokens(s.transcript))
    from_words = "from the words" in seed_emotion
    measured = seed_emotion.replace("(from the words)", "").strip()
    measured = lx.EMOTION_ALIASES.get(measured, measured)
    for i, w in enumerate(words):
        e = lx.EMOTION_OF.get(w)
        if e is None or w in said:
            continue
        window = " ".join(words[max(0, i - 4): i + 5])
        about_voice = w.endswith("ly") or bool(_VOICE_CONTEXT.search(window))
        if measured and not from_words:
            if e != measured:
                return "contradicts_seed", f"says {w!r} but the seed emotion is {measured!r}"
        elif about_voice:
            if from_words:
                return "emotion_as_heard", (f"says the voice sounds {w!r}, but the seed emotion {measured!r} was read "
                                            f"from the words, not heard")
            return "unsupported_attribute", f"says the voice sounds {w!r} but the seed has no emotion"
    return None


# ---- invented content ------------------------------------------------------------------------------
def invented(s: Subject, source: str) -> Failure | None:
    """Numbers, names, times, colours and unheard things (appearance, scene, devices) that neither the
    transcript nor the seed has."""
    have = lx.numbers(source)
    for v in sorted(lx.numbers(s.response) - have):
        if v not in (0.5, 0.25) or not have:
            return "invented", f"states the number {v:g}, which the source does not have"
    src = lx.stem_set(source)
    words = lx.tokens(s.response)
    for w in words:
        st = lx.stem(w)
        if st in src:
            continue
        if w in lx.TIME_WORDS:
            return "invented", f"states the time {w!r}, which the source does not have"
        if w in lx.COLOURS:
            return "invented", f"states the colour {w!r}, which the source does not have"
        if st in lx.UNHEARD:
            return "invented", f"mentions {w!r}: not in the source and not something the clip lets one hear"
    text = ABBREV.sub("Dr ", s.response)
    for sent in SENTENCE.split(text):
        toks = lx._TOKEN.findall(sent)
        for j, tok in enumerate(toks[1:], 1):
            if tok[:1].isupper() and tok.lower().strip("'’s") not in ALLOWED_CAPS and lx.stem(tok) not in src \
                    and not toks[j - 1].endswith(":"):
                return "invented", f"names {tok!r}, which the source does not have"
    return None


def uninformative(s: Subject, cfg: LLMConfig) -> Failure | None:
    """A description must say something of what is said (enough of the transcript's content words), and
    not mostly something else (a majority of new content words, beyond the vocabulary of describing speech)."""
    tr = set(lx.content_stems(s.transcript))
    if not tr:
        return None
    said = lx.content_stems(s.response, lx.DESCRIBING)
    got = set(said) & tr
    need = min(2, len(tr))
    src = lx.stem_set(f"{s.transcript} {s.seed_description}")
    novel = [w for w in said if w not in src]
    share = len(novel) / len(said) if said else 0.0
    s.scores.update(transcript_overlap=len(got), novel_content_share=round(share, 3))
    if len(got) < need:
        return "uninformative", f"shares {len(got)} content word(s) with the transcript (< {need}): says nothing of its content"
    s.scores["_novel"] = (novel, len(said), share)
    return None


def novel_content(s: Subject, cfg: LLMConfig) -> Failure | None:
    novel, n_said, share = s.scores.pop("_novel", ([], 0, 0.0))
    if len(novel) >= cfg.description_max_novel_words and share > cfg.description_max_novel_share:
        return "novel_content", (f"{len(novel)} of its {n_said} content words ({share:.0%}) are in neither the "
                                 f"transcript nor the seed: {' '.join(novel[:8])}")
    return None


# ---- QA ------------------------------------------------------------------------------------------------
# "What should you do ...?", "How long do you have to wait ...?": about what an instruction tells its listener
INSTRUCTION_Q = re.compile(r"\b(?:should|must|can|could) you\b|\bdo you (?:need|have) to\b|\bare you (?:asked|told|supposed) to\b", re.I)


def instructs(transcript: str) -> bool:
    """The words tell the listener to do something: "please", or a clause that opens with a verb and its object
    ("Preheat the oven", "unplug the router, wait ten seconds"; pipeline.quality.retelling.imperative_verbs)."""
    return bool(re.search(r"\bplease\b", transcript, re.I) or imperative_verbs(transcript))


def qa_rules(s: Subject, cfg: LLMConfig) -> Failure | None:
    q, a = s.prompt.strip(), s.response.strip()
    qw = lx.tokens(q)
    if len(qw) < 3 or not q.endswith("?") or not (lx.WH_START.search(q) or lx.AUX_START.search(q)):
        return "malformed_question", f"not a well-formed question: {q[:60]!r}"
    if lx.AUX_START.search(q) and aw_yes_no(a) and len(lx.tokens(a)) <= 2:
        return "yes_no", "a yes/no question answered by a bare yes or no"
    said = set(lx.tokens(s.transcript))
    if {"you", "your", "yourself"} & set(qw) and not {"you", "your"} & said \
            and not (INSTRUCTION_Q.search(q) and instructs(s.transcript)):
        return "odd_question", "asks the listener about themselves, not about the clip"
    tr = lx.stem_set(s.transcript)
    qc = set(lx.content_stems(q, lx.DESCRIBING))
    if qc and not qc & tr and not lx.numbers(q) & lx.numbers(s.transcript):
        return "question_ungrounded", "the question shares no content word with the transcript"
    ac = set(lx.content_stems(a, lx.DESCRIBING)) | {f"#{v:g}" for v in lx.numbers(a)}
    if not ac and not aw_yes_no(a):
        return "answer_no_content", f"the answer {a!r} has no content word: it names nothing"
    qs = set(lx.content_stems(q)) | {f"#{v:g}" for v in lx.numbers(q)}
    if ac and ac <= qs:
        return "answer_in_question", "every content word of the answer is already in the question"
    n = len(a.split())
    if n > cfg.qa_max_answer_words:
        return "too_long", f"answer has {n} words > {cfg.qa_max_answer_words}"
    aw = set(lx.tokens(a))
    if lx.HOW_OFTEN_Q.search(q) and not (lx.FREQUENCY.search(a) and lx.FREQUENCY.search(s.transcript)):
        return "answer_type", "a how-often question whose answer (or transcript) gives no frequency"
    if lx.QUANTITY_Q.search(q) and not (lx.numbers(a) or aw & lx.QUANTITY_A):
        return "answer_type", "a how-many/how-long question whose answer has no number or quantity"
    if lx.TIME_Q.search(q) and not (lx.numbers(a) or aw & lx.TIME_A):
        return "answer_type", "a when-question whose answer has no time"
    if lx.WHERE_Q.search(q) and aw and aw <= (lx.TIME_A | lx.STOP | {w for w in aw if lx.numbers(w)}):
        return "answer_type", "a where-question answered with a time, not a place"
    if lx.NAME_Q.search(q) and not lx.NAME_A.search(a):
        return "answer_type", "a question asking for a name whose answer has no name"
    g = grounding(a, s.transcript)
    s.scores["grounding"] = round(g, 3)
    if g < cfg.qa_min_grounding:
        return "ungrounded", f"only {g:.0%} of the answer's content words occur in the transcript"
    f = (answer_kind(q, a, s.transcript) or identity_of_a_named_span(q, a, s.transcript) or repeated_in_question(q)
         or condition_as_fact(q, a, s.transcript) or subject_of_another_verb(q, a, s.transcript)
         or invented_setting(q, s.transcript) or object_as_subject(q, s.transcript) or counted_other_thing(q, a, s.transcript)
         or who_answer_is_object(q, a, s.transcript) or what_with_full_object(q) or dropped_object(q, s.transcript)
         or answer_elsewhere(q, a, s.transcript))
    if f:
        return f
    if cfg.qa_extractive:
        sp = span_score(a, s.transcript)
        s.scores["span"] = round(sp, 3)
        if sp < cfg.qa_min_span:
            return "not_a_span", f"the answer is not (near) a span of the transcript ({sp:.0%} < {cfg.qa_min_span:.0%})"
    return None


CLAUSE = re.compile(r"(?<=[.!?;])\s+|,\s+(?=(?:and|but|so|or|while|whereas)\b)", re.I)
CAUSAL = re.compile(r"^(?:\w+\s+)?(?:why|how come)\b|\bwhat (?:will |would |could )?happens?\b|\bwhat happened\b|\breason\b", re.I)
CAUSAL_A = re.compile(r"^\W*(?:because|since|so that|so|in order|due to|as a result)\b", re.I)
GENERIC_Q = frozenset(lx.stem(w) for w in "happen happens happened thing things kind type purpose reason mean means".split())


def _number_stems(text: str) -> set[str]:
    return {lx.stem(w) for w in lx.tokens(text) if lx.number_value(w) is not None}


def answer_elsewhere(q: str, a: str, transcript: str) -> Failure | None:
    """The answer is taken from one clause of the transcript and the question is about another one ("What is the
    kettle boiling?" -> "fresh biscuits" from "The kettle is boiling, and there are fresh biscuits ..."): the
    clause that holds the answer shares none of the question's own content words."""
    clauses = [c for c in CLAUSE.split(transcript) if c.strip()]
    if len(clauses) < 2:
        return None
    ans = set(lx.content_stems(a, lx.DESCRIBING)) | _number_stems(a)  # "noon", "four" count as what the answer names
    rest = set(lx.content_stems(q, lx.DESCRIBING)) - ans - GENERIC_Q
    if not ans or not rest:
        return None
    if CAUSAL.search(q) or CAUSAL_A.search(a):
        return None  # why / what-happens-if questions link one clause to another on purpose
    sets = [lx.stem_set(c) for c in clauses]
    top = max(len(ans & st) for st in sets)
    if top < max(1, len(ans) // 2):
        return None  # the answer is no span of one clause: the round trip judges it
    best = [i for i, st in enumerate(sets) if len(ans & st) == top]
    if not any(rest & sets[i] for i in best):
        return "answer_elsewhere", (f"the answer comes from the clause {clauses[best[0]].strip()[:60]!r}, which shares no "
                                    f"content word with the question")
    return None


def aw_yes_no(answer: str) -> bool:
    return normalize(answer).split()[:1] in (["yes"], ["no"])


def grounding(answer: str, transcript: str) -> float:
    """Share of the answer's content words (stemmed, numbers by value) found in the transcript."""
    tr = lx.stem_set(transcript)
    nums = lx.numbers(transcript)
    ans = [w for w in lx.tokens(answer) if w not in lx.STOP and lx.stem(w) not in lx.DESCRIBING]
    if not ans:
        return 1.0 if lx.numbers(answer) <= nums else 0.0
    ok = sum(lx.stem(w) in tr or (lx.number_value(w) is not None and lx.number_value(w) in nums) for w in ans)
    return ok / len(ans)


def _norm_tokens(text: str) -> list[str]:
    out = []
    for w in lx.tokens(text):
        v = lx.number_value(w)
        out.append(f"#{v:g}" if v is not None else lx.stem(w))
    return out


def span_score(answer: str, transcript: str) -> float:
    """Best share of the answer's tokens matched, in order, by a window of the transcript of about the
    answer's length (1.0: the answer is a span, up to stop words, numbers and inflection)."""
    a = [w for w in _norm_tokens(answer) if w not in lx.STOP]
    t = _norm_tokens(transcript)
    if not a:
        return 1.0
    best = 0
    width = 2 * len(a) + 3
    for i in range(len(t)):
        win = t[i:i + width]
        k = 0
        for w in win:
            if k < len(a) and w == a[k]:
                k += 1
        best = max(best, k)
    return best / len(a)


def token_f1(a: str, b: str) -> float:
    """Token F1 of two answers after normalisation (stop words out, numbers by value, light stemming)."""
    x = [w for w in _norm_tokens(a) if w not in lx.STOP] or _norm_tokens(a)
    y = [w for w in _norm_tokens(b) if w not in lx.STOP] or _norm_tokens(b)
    if not x or not y:
        return 0.0
    common = sum(min(x.count(w), y.count(w)) for w in set(x))
    if not common:
        return 0.0
    p, r = common / len(x), common / len(y)
    return 2 * p * r / (p + r)


# ---- all rules --------------------------------------------------------------------------------------------
def _same_text(a: str, b: str, at_least: float = 0.8) -> bool:
    """The two texts are (nearly) the same sentence, in any script (difflib ratio of the normalised strings)."""
    from difflib import SequenceMatcher

    x, y = normalize(a).replace(" ", ""), normalize(b).replace(" ", "")
    return bool(x and y) and SequenceMatcher(None, x, y, autojunk=False).ratio() >= at_least


def asr_unsure(cfg: LLMConfig, text_source: str | None, asr_avg_logprob: float | None) -> str | None:
    """Why nothing may be grounded in this ASR pseudo-label (avg log-prob under ``llm.min_asr_logprob``), or None.
    The rule asr_low_confidence; the llm stage asks it before generating anything from the utterance."""
    lp, least = asr_avg_logprob, cfg.min_asr_logprob
    if text_source == "asr" and lp is not None and least is not None and lp < least:
        return f"grounded in an ASR pseudo-label with avg log-prob {lp:.2f} < {least}"
    return None


def rule_check(s: Subject, cfg: LLMConfig, sentences: list[set[str]], examples: frozenset = frozenset()) -> Failure | None:
    """The rules of one candidate, cheapest first; the first failure, or None."""
    unsure = asr_unsure(cfg, s.text_source, s.asr_avg_logprob)
    if unsure:
        return "asr_low_confidence", unsure
    text = s.response.strip()
    n = word_count(text, s.language or cfg.output_language)  # characters / 2 for ja, zh, ... (issue 16)
    n = int(n) if n == int(n) else round(n, 1)
    if s.task == "description":
        if n < cfg.description_min_words:
            return "too_short", f"{n} words < {cfg.description_min_words}"
        if n > cfg.description_max_words:
            return "too_long", f"{n} words > {cfg.description_max_words}"
    elif not text:
        return "too_short", "empty answer"
    for part in (text, s.prompt if s.task == "qa" else ""):
        m = REFUSAL.search(part)
        if m:
            return "refusal", f"refusal pattern: {m.group(0)!r}"
    f = repetition(s, cfg) or truncation(s) or leak(s, cfg, sentences, examples)
    if f:
        return f
    if cfg.language_check:
        f = language_mismatch(text if s.task == "description" else f"{s.prompt} {text}",
                              s.language or cfg.output_language)
        if f:
            return f
    if s.task == "qa" and _same_text(s.prompt, s.transcript):
        return "odd_question", "the question is the transcript itself"
    lang = (s.language or cfg.output_language or "en").split("-")[0].lower()
    if lang != "en":  # the word lists below are English: other languages get the language-aware basic rules
        return _basic_rules(s, cfg, lang)
    if s.task == "qa" and _same_text(s.response, s.transcript, 0.9):  # (other languages: answer_repeats_question)
        return "odd_question", "the answer is the whole transcript: the question asks for no part of it"
    seed = parse_seed(s.seed_description)
    if s.task == "description":
        return (voice_of_assistant(s) or consistency(s, seed) or swapped_pronoun(s.transcript, s.response)
                or question_as_statement(s.transcript, s.response) or negated_retelling(s.transcript, s.response)
                or antonym_of_the_words(s.transcript, s.response)
                or listener_action_as_speaker(s.transcript, s.response)
                or uninformative(s, cfg)
                or invented(s, f"{s.seed_description} {s.transcript}")
                or added_clause(s.transcript, s.seed_description, s.response) or novel_content(s, cfg))
    return invented(s, s.transcript) or antonym_of_the_words(s.transcript, s.response) or qa_rules(s, cfg)


def _basic_rules(s: Subject, cfg: LLMConfig, language: str) -> Failure | None:
    """Grounding of QA answers (characters for ja, zh, ...) and the answer repeating the question, for
    languages without the English word lists; the judge (production model) does the rest there."""
    if s.task != "qa":
        return None
    from pipeline.quality.qa import grounded

    if not s.prompt.strip().endswith(("?", "？", "؟", ";")):  # ";" is the Greek question mark
        return "malformed_question", f"not a question (no question mark): {s.prompt.strip()[:60]!r}"
    g = grounded(s.response, s.transcript, language)
    s.scores["grounding"] = round(g, 3)
    if _same_text(s.response, s.prompt, 0.9) or _same_text(s.response, s.transcript, 0.9):  # (exact repeats too)
        return "answer_repeats_question", "the answer repeats the question or the whole transcript"
    if g < cfg.qa_min_grounding:
        return "ungrounded", f"only {g:.0%} of the answer's content words occur in the transcript"
    return answer_type_i18n(s.prompt, s.response, language)
