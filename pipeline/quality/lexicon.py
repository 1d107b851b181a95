"""Word-level helpers for the quality checks: tokens, a light stemmer, number words, and the word lists
that say what a description claims about a voice or a recording (gender, pitch, speed, noise, emotion)
or about things a listener cannot hear (appearance, scene, devices).

English only; other languages get the language-independent checks (repetition, truncation, leaks by
prompt similarity, numbers, seed consistency by numbers) and leave the rest to the judge."""
from __future__ import annotations

import re

from pipeline.core.text import has_cjk, normalize
from pipeline.core.text import tokens as cjk_tokens

STOP = frozenset("""a an the and or but of to in on at for with is are was were be been being it its this that these those
i you he she we they me him her us them my your his our their what which who whom whose how when where why do does did
done not no yes so as by from into onto about than then there here all any some each every also just very too can could
will would shall should may might must has have had having if while up down out over under again once only own same such
both few more most other one ones s t don't doesn't didn't i'm it's that's there's let's please""".split())

NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty".split())}
NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
                     "hundred": 100, "thousand": 1000, "million": 1000000, "dozen": 12, "dozens": 12, "hundreds": 100,
                     "thousands": 1000, "first": 1, "third": 3, "fourth": 4, "fifth": 5, "tenth": 10, "twice": 2,
                     "thrice": 3, "half": 0.5, "quarter": 0.25, "noon": 12, "midnight": 0})
# "one" is mostly a pronoun ("the one by the station"), "second" mostly a unit: neither counts as a stated number
NOT_NUMBERS = frozenset({"one", "second", "seconds"})
TIME_WORDS = frozenset("""morning afternoon evening night tonight noon midnight today tomorrow yesterday weekday weekdays weekend
monday tuesday wednesday thursday friday saturday sunday mondays tuesdays wednesdays thursdays fridays saturdays sundays
january february april june july august september october november december summer autumn winter o'clock
pm""".split())  # not "may", "march", "fall", "spring", "am": mostly verbs
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d+(?:[.,:]\d+)*")


def tokens(text: str) -> list[str]:
    if has_cjk(text):  # ja / zh / th ...: no spaces between words, so characters are the units (issue 16)
        return cjk_tokens(text.replace("-", " "), "ja")
    return normalize(text).replace("-", " ").split()


def stem(w: str) -> str:
    """A light English stemmer: plural, possessive, -ing, -ed, -ly (enough to match 'Sundays'/'Sunday',
    'practised'/'practise', 'returned'/'return')."""
    w = w.lower().strip("'’")
    if w.endswith("'s"):
        w = w[:-2]
    for suf, rep, minlen in (("ies", "y", 5), ("sses", "ss", 5), ("ches", "ch", 5), ("shes", "sh", 5), ("xes", "x", 4),
                             ("ing", "", 6), ("edly", "", 7), ("ied", "y", 5), ("ed", "", 5), ("ly", "", 6),
                             ("s", "", 4)):
        if w.endswith(suf) and len(w) >= minlen and not w.endswith("ss"):
            w = w[: len(w) - len(suf)] + rep
            break
    if len(w) > 4:
        w = w.rstrip("e")
    # British / American spellings the ASR and the LLM mix: practise/practice, colour/color, harbour/harbor
    return re.sub(r"our$", "or", re.sub(r"(?<=..)(?:is|iz)$", "ic", w))


def number_value(w: str) -> float | None:
    w = w.lower()
    if w in NOT_NUMBERS:
        return None
    if w in NUMBER_WORDS:
        return float(NUMBER_WORDS[w])
    if re.fullmatch(r"\d+(?:\.\d+)?", w):
        return float(w)
    return None


def numbers(text: str) -> set[float]:
    """Every number stated in a text, digits or words ("6:30" -> {6, 30}; "twenty five" -> {20, 5, 25})."""
    out: set[float] = set()
    prev = None
    for w in tokens(text):
        v = number_value(w)
        if v is not None:
            out.add(v)
            if prev is not None and prev >= 20 and prev % 10 == 0 and v < 10:
                out.add(prev + v)
            if prev is not None and v in (100.0, 1000.0):
                out.add(prev * v)
        prev = v
    return out


def content_stems(text: str, extra_stop: frozenset = frozenset()) -> list[str]:
    return [st for w in tokens(text) if w not in STOP and number_value(w) is None and (st := stem(w)) not in extra_stop]


def stem_set(text: str) -> set[str]:
    return {stem(w) for w in tokens(text)}


# ---- what a description may say without a source: the vocabulary of describing speech
DESCRIBING = frozenset(stem(w) for w in """speaker speak speaks spoke spoken speaking speech voice voiced voices says say said saying
tells tell told talk talks talking talked asks ask asked explains explain explained mentions mention mentioned announces
announce announced states state stated describes describe reads read reading recording recorded audio clip sound sounds
sounding listener listeners someone person man woman male female he she tone pace speed pitch pitched noise background
quality clear clearly clean fairly slightly slight some little quiet loud softly words sentence line statement message
tells saying give gives gave giving point points pointed introduce introduces introduced remind reminds reminded
complain complains complained let lets know now aloud mid range pronounce pronounced short brief clip
low lower high higher deep quick quickly fast slow slowly normal moderate steady noisy faint""".split())

# things a listener cannot hear, or a scene nobody described: invented unless the source has the word
UNHEARD = frozenset(stem(w) for w in """wearing wears wore shirt dress glasses hat jacket coat raincoat suit tie smiling smile smiles
smiled eyes hair beard tall short-haired blonde stage theater theatre audience crowd party guests concert band orchestra
microphone loudspeaker studio headphones podcast radio broadcast interview conversation dialogue discussion debate singing
sings sang song songs applause laughter laughing laughs crying cries footsteps birds dog barking phone telephone video
camera screen television tv poker famous celebrity actor actress teenager child children kids boyfriend girlfriend
husband wife kitchen office classroom restaurant cafe""".split())
COLOURS = frozenset("red green yellow orange purple pink brown black white grey gray golden silver blue".split())

# ---- voice attributes (regexes on lower-case text)
FEMALE_W = re.compile(r"\b(female|woman|women|girl|girls|lady|ladies|feminine|she|her|hers|herself|mother|grandmother)\b")
MALE_W = re.compile(r"\b(male|man|men|boy|boys|gentleman|gentlemen|masculine|he|him|his|himself|father|grandfather)\b")
PITCH_HIGH = re.compile(r"\bhigh(?:er)?[- ](?:pitched|voice|voiced|pitch|tone|register)\b|\bshrill\b|\bsqueaky\b|"
                        r"\bpitch (?:is|was) high\b")
PITCH_LOW = re.compile(r"\blow(?:er)?[- ](?:pitched|voice|voiced|pitch|tone|register)\b|\bdeep(?:er)?[- ]"
                       r"(?:voice|voiced|tone|pitch|register)\b|\bbaritone\b|\bbass voice\b|\bpitch (?:is|was) low\b")
PITCH_MID = re.compile(r"\b(?:mid[- ]range|medium|moderate|average|normal|neutral|natural)[- ](?:pitch|pitched)\b")
DELIVERY = r"(?:speak\w*|spoke\w*|talk\w*|says?|said|saying|reads?|reading|asks?|asking|explain\w*|announc\w*|pace|speed|" \
           r"tempo|rate|delivery|deliver\w*|voice|tone|sounds?|names?|gives?|giving|mentions?)"
SPEED_FAST = re.compile(rf"\b(?:quickly|rapidly|hurriedly|briskly|hastily)\b|\b(?:fast|quick|rapid|hurried|brisk)\b"
                        rf"(?=(?:\W+\w+){{0,2}}?\W+{DELIVERY}\b)|\b{DELIVERY}(?:\W+\w+){{0,2}}?\W+(?:fast|quick|rapid|hurried|brisk)\b")
SPEED_SLOW = re.compile(rf"\b(?:slowly|leisurely|unhurriedly|deliberately)\b|\b(?:slow|unhurried|measured|drawn[- ]out)\b"
                        rf"(?=(?:\W+\w+){{0,2}}?\W+{DELIVERY}\b)|\b{DELIVERY}(?:\W+\w+){{0,2}}?\W+(?:slow|unhurried)\b")
CLEAN_W = re.compile(r"\bcrystal[- ]clear\b|\bclean\b|\bclear (?:recording|audio|sound)\b|\bno (?:\w+ )?noise\b|"
                     r"\bwithout (?:any )?(?:\w+ )?noise\b|\bnoise[- ]free\b|\bhigh[- ]quality\b|\bstudio\b|\bcrisp\b|"
                     r"\bpristine\b|\bsilent background\b|\bquiet background\b")
NOISY_W = re.compile(r"\b(?:(slight|faint|little|some|minimal|a bit of|a little|low|light|soft|mild)\W+)?"
                     r"(?:noisy|noise|static|hiss\w*|hum|humming|crackl\w*|muffled|distort\w*|poor[- ]quality|"
                     r"low[- ]quality)\b")
EMOTIONS = {
    "happy": "happy happily cheerful cheerfully joyful joyfully joyous delighted excited excitedly glad gladly upbeat "
             "enthusiastic enthusiastically pleased elated bright brightly warmly relieved grateful gratefully thankful "
             "proud proudly hopeful hopefully relaxed",
    "sad": "sad sadly sorrowful sorrowfully melancholy melancholic gloomy tearful tearfully trembling mournful "
           "disappointed disappointedly dejected upset hurt lonely weary",
    "angry": "angry angrily annoyed irritated irritably furious furiously frustrated shouts shouting yells yelling "
             "outraged irate harsh harshly",
    "neutral": "neutral calm calmly flat evenly matter-of-fact matter-of-factly composed",
    "fearful": "afraid fearful fearfully scared anxious anxiously nervous nervously worried frightened tense uneasy "
               "stressed",
    "surprised": "surprised amazed astonished",
    "disgusted": "disgusted disgust",
}
EMOTION_OF = {w: e for e, ws in EMOTIONS.items() for w in ws.split()}
EMOTION_ALIASES = {"joy": "happy", "happiness": "happy", "sadness": "sad", "anger": "angry", "fear": "fearful",
                   "calm": "neutral", "surprise": "surprised", "disgust": "disgusted", "neu": "neutral", "hap": "happy",
                   "ang": "angry"}
SECOND_PERSON = re.compile(r"\b(you|your|yours|yourself)\b")
# someone a description is about: a description that names no one reads as a reply, not a description
SPEAKER_REF = re.compile(r"\b(?:speaker|speakers|voice|man|woman|men|women|person|someone|he|she|they|narrator|announcer|"
                         r"male|female|boy|girl|child|adult|listener|speaks|speaking|says|said|asks|tells)\b", re.I)
FIRST_PERSON = re.compile(r"\b(i|i'm|i'll|i've|i'd|me|my|mine|myself)\b")
ASSISTANT_OPENER = re.compile(r"^\s*(sure|ok|okay|certainly|of course|absolutely|got it|no problem|here is|here's)\b", re.I)
WH_START = re.compile(r"^(?:(?:on|at|in|by|from|to|for|with|within|under|over|after|before|until|till|since|of|about|during|"
                      r"through|into|between|near|behind|without|like|according to)\s+)?"
                      r"(?:what|which|who|whom|whose|where|when|why|how)\b", re.I)
AUX_START = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|will|would|should|shall|has|have|had|may|might|must)\b", re.I)
QUANTITY_Q = re.compile(r"^(?:\w+\s+)?how (?:many|much|long|old|often|far)\b|\bwhat (?:time|year|number)\b", re.I)
TIME_Q = re.compile(r"^(?:\w+\s+)?(?:when|at what time|what time|on which day|on what day|which day|what day)\b", re.I)
QUANTITY_A = frozenset("several many few lot lots some every each century decades years hours minutes days times "
                       "once twice daily weekly all none".split())
TIME_A = TIME_WORDS | frozenset("before after until early late soon now later ago every each daily hour hours minute "
                                "minutes week weeks year years time times day days".split())
HOW_OFTEN_Q = re.compile(r"^(?:\w+\s+)?how often\b|\bhow frequently\b", re.I)
FREQUENCY = re.compile(r"\b(?:every|each|daily|weekly|monthly|yearly|hourly|nightly|once|twice|thrice|times|always|usually|"
                       r"often|sometimes|never|rarely|per|a (?:day|week|month|year))\b", re.I)
FIRST_PLURAL = re.compile(r"\b(we|we're|we'll|we've|us|our|ours|ourselves)\b")
WHERE_Q = re.compile(r"^(?:\w+\s+)?where\b", re.I)
NAME_Q = re.compile(r"\b(?:what|which) (?:is|was|are|were) (?:the|his|her|their|its) names?\b|\bwhat is \w+ called\b|"
                    r"\bwho is (?:the|this) (?:man|woman|person|speaker)\b", re.I)
# a name: a capitalised word that is not where the sentence starts, or a first word that is no article / pronoun
NAME_A = re.compile(r"(?<!^)(?<![.!?] )\b[A-Z][a-z]+|^(?!(?:The|A|An|It|He|She|They|His|Her|Their|Its|This|That|In|On|At)\b)[A-Z][a-z]+")
SPEED_NORMAL = re.compile(r"\b(?:normal|moderate|steady|average|regular|even)[- ](?:pace|speed|tempo|rate)\b|"
                          r"\bspeed is normal\b|\bpace is normal\b")
