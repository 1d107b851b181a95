"""Written text -> spoken form for a TTS voice: number, currency, unit, symbol and abbreviation expansion
(``normalize_for_speech``), ``Unspeakable`` (with a ``.reason`` code) for text that should not be spoken, and
``speech_text`` (which fields of a ``TextInstruction`` to speak).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pipeline.recipes.text.base import TextInstruction

#: Default limit on the length (characters, after normalisation) of a text to speak; TTSConfig.max_chars.
MAX_CHARS = 400


class Unspeakable(ValueError):
    """Text that a TTS voice cannot read well. ``reason`` is one of REASONS."""

    REASONS = ("empty", "too_long", "code", "url", "symbols")

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


_URL = re.compile(
    r"(?i)\b(?:https?://|ftp://|www\.)\S+"
    r"|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|ai|co|uk|de|fr|info|biz|ly|me|app|dev)(?:/\S*)?\b"
)
_CODE_LINE = re.compile(
    r"^\s*(?:def\s+\w+\s*\(|class\s+\w+\s*[:({]|import\s+[\w.]+(?:\s+as\s+\w+)?\s*;?\s*$|from\s+[\w.]+\s+import\s"
    r"|#include\b|function\s+\w+\s*\(|(?:var|let|const)\s+\w+\s*=|(?:public|private|protected)\s+(?:static\s+)?"
    r"(?:void|int|class|String|boolean|def|fun)\b|return\b.*;|SELECT\b.+\bFROM\b|for\s*\(|if\s*\(.*\)\s*\{|while\s*\("
    r"|print\(|console\.log|<\?php|</?[a-z]+[^>]*>)"
    r"|[;{}]\s*$|=>|->|::|==|!=|&&|\|\||\w+\([^()]*\)\s*[;{]|\w+\.\w+\([^)]*\)|\\[a-zA-Z]+\{|\$[^$\s\d][^$]*\$",
    re.MULTILINE,
)
_CODE_CHARS = set("{}<>;=_\\|^`")


def _looks_like_code(text: str) -> str | None:
    if "```" in text or "`" in text:
        return "contains backtick code"
    lines = [ln for ln in text.splitlines() if ln.strip()]
    code_lines = [ln for ln in lines if _CODE_LINE.search(ln)]
    if code_lines:
        return f"code-like line: {code_lines[0].strip()[:60]!r}"
    n = len(text)
    heavy = sum(c in _CODE_CHARS for c in text)
    if heavy >= 3 and heavy / max(n, 1) > 0.03:
        return f"{heavy} code characters ({{}}[]<>;=_ ...) in {n}"
    return None


_ABBREV_EN = [
    (r"\be\.g\.(?=\W|$)", "for example"),
    (r"\bi\.e\.(?=\W|$)", "that is"),
    (r"\betc\.(?=\s+[A-Z]|\s*$)", "et cetera."),
    (r"\betc\.", "et cetera"),
    (r"\bvs\.?(?=\s)", "versus"),
    (r"\bapprox\.", "approximately"),
    (r"\bDr\.(?=\s)", "Doctor"),
    (r"\bMr\.(?=\s)", "Mister"),
    (r"\bMrs\.(?=\s)", "Missus"),
    (r"\bMs\.(?=\s)", "Miz"),
    (r"\bC\+\+", "C plus plus"),
    (r"\bC#", "C sharp"),
    (r"\bF#", "F sharp"),
    (r"\bProf\.(?=\s)", "Professor"),
    (r"\bSt\.(?=\s+[A-Z])", "Saint"),
    (r"\bJr\.", "Junior"),
    (r"\bSr\.", "Senior"),
    (r"\bNo\.(?=\s*\d)", "number"),
    (r"\bfig\.(?=\s*\d)", "figure"),
    (r"\bmin\.(?=\s)", "minutes"),
    (r"\bhrs?\.(?=\s)", "hours"),
]
_UNITS_EN = {
    "km": "kilometers", "kg": "kilograms", "cm": "centimeters", "mm": "millimeters", "mg": "milligrams",
    "ml": "milliliters", "mph": "miles per hour", "km/h": "kilometers per hour", "kmh": "kilometers per hour",
    "GB": "gigabytes", "MB": "megabytes", "KB": "kilobytes", "TB": "terabytes", "Hz": "hertz", "kHz": "kilohertz",
    "lbs": "pounds", "lb": "pounds", "oz": "ounces", "ft": "feet", "mi": "miles", "kW": "kilowatts",
}
_CURRENCY = {  # symbol -> (major singular, major plural, minor singular, minor plural)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_SCALE = r"(?:\s+(?P<scale>thousand|million|billion|trillion))?"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_YEAR_CUES = {"in", "since", "by", "from", "until", "till", "during", "of", "year", "circa", "around", "before",
              "after", "between", "and", "to", "early", "late", "mid", "summer", "winter", "spring", "autumn", "fall",
              "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
              "november", "december"}
_FRACTIONS = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _zh_cardinal(n: int) -> str:
    """Chinese (Mandarin) cardinal for 0 <= n < 10**12 (num2words has no Chinese); other values stay digits."""
    digits, small = "零一二三四五六七八九", ("", "十", "百", "千")
    if not 0 <= n < 10 ** 12:
        return str(n)
    if n < 10:
        return digits[n]

    def four(x: int) -> str:  # 1..9999
        out, zero = "", False
        for p in (3, 2, 1, 0):
            d = x // 10 ** p % 10
            if d:
                out += ("零" if zero and out else "") + digits[d] + small[p]
                zero = False
            else:
                zero = True
        return out

    parts, big = [], ("", "万", "亿")
    for k in range(2, -1, -1):
        chunk = n // 10 ** (4 * k) % 10 ** 4
        if chunk:
            if parts and chunk < 1000:
                parts.append("零")
            parts.append(four(chunk) + big[k])
    s = "".join(parts)
    return s[1:] if s.startswith("一十") else s  # 十二, not 一十二


def _n2w(value, lang: str, **kw) -> str:
    from num2words import num2words

    if lang[:2] == "zh" and isinstance(value, int) and not kw:
        return _zh_cardinal(value)

    for code in dict.fromkeys((lang.replace("-", "_"), lang[:2])):
        try:
            return num2words(value, lang=code, **kw)
        except NotImplementedError:
            continue
    return str(value)  # language unknown to num2words: leave the digits to the voice's own front end


def _cardinal(s: str, lang: str) -> str:
    s = s.replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        point = {"en": "point", "de": "Komma", "fr": "virgule", "es": "coma", "it": "virgola"}.get(lang[:2], "point")
        digits = " ".join(_n2w(int(d), lang) for d in frac)
        return f"{_n2w(int(whole or 0), lang)} {point} {digits}"
    return _n2w(int(s), lang)


def _currency(m: re.Match, lang: str) -> str:
    sym, amount, scale = m.group("sym"), m.group("amt").replace(",", ""), m.group("scale")
    one, many, cent1, cents = _CURRENCY[sym]
    if scale:
        return f"{_cardinal(amount, lang)} {scale} {many}"
    whole, _, frac = amount.partition(".")
    w = int(whole or 0)
    words = f"{_n2w(w, lang)} {one if w == 1 else many}"
    if frac:
        c = int((frac + "0")[:2])
        if c:
            words += f" and {_n2w(c, lang)} {cent1 if c == 1 else cents}"
    return words


def _expand_numbers_en(t: str, lang: str) -> str:
    # numeric ranges: 10-20 -> ten to twenty (before signs are read as "minus")
    t = re.sub(rf"(?<![\w-])({_NUM})\s?[-–]\s?({_NUM})(?![\w-])", r"\1 to \2", t)
    # products and markers that need the digits: 3 x 4, 3*4, #5, ~5
    t = re.sub(rf"({_NUM})\s*[x×*]\s*({_NUM})\b", r"\1 times \2", t)
    t = re.sub(r"#\s*(?=\d)", "number ", t)
    t = re.sub(r"~\s*(?=\d)", "about ", t)
    # clock times with am/pm: 10am, 3:30 p.m.
    t = re.sub(r"\b(\d{1,2})(?::(\d\d))?\s?([ap])\.?m\.?(?=\W|$)",
               lambda m: f"{_time(int(m.group(1)), int(m.group(2) or 0), lang, oclock=False)} {m.group(3)}.m.", t)
    # currency: $12.50, $1,000, $2.5 million
    t = re.sub(rf"(?P<sym>[$€£¥₹])\s?(?P<amt>{_NUM}){_SCALE}", lambda m: _currency(m, lang), t)
    # percent
    t = re.sub(rf"(?<![\w.])(?P<sign>-)?(?P<n>{_NUM})\s?%",
               lambda m: ("minus " if m.group("sign") else "") + _cardinal(m.group("n"), lang) + " percent", t)
    # temperature / degrees
    t = re.sub(rf"(?<![\w.])(?P<sign>-)?(?P<n>{_NUM})\s?°\s?(?P<u>[CF])\b",
               lambda m: ("minus " if m.group("sign") else "") + _cardinal(m.group("n"), lang)
               + " degrees " + ("Celsius" if m.group("u") == "C" else "Fahrenheit"), t)
    t = re.sub(rf"(?P<n>{_NUM})\s?°", lambda m: _cardinal(m.group("n"), lang) + " degrees", t)
    # ordinals: 1st 2nd 3rd 21st 100th
    t = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: _n2w(int(m.group(1)), lang, to="ordinal"), t)
    # decades: 1990s, '90s
    t = re.sub(r"\b(1[1-9]\d0|20\d0)'?s\b", lambda m: _decade(int(m.group(1)), lang), t)
    # times: 10:30, 3:05, 10:00
    t = re.sub(r"\b([01]?\d|2[0-3]):([0-5]\d)\b", lambda m: _time(int(m.group(1)), int(m.group(2)), lang), t)
    # simple fractions: 1/2, 3/4, 2/3 (not dates like 12/25/2020)
    t = re.sub(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])", lambda m: _fraction(int(m.group(1)), int(m.group(2)), lang), t)
    # units after a number
    units = "|".join(sorted((re.escape(u) for u in _UNITS_EN), key=len, reverse=True))
    t = re.sub(rf"(?P<n>{_NUM})\s?(?P<u>{units})\b", lambda m: f"{m.group('n')} {_unit(m.group('n'), m.group('u'))}", t)
    # years and plain cardinals (with optional sign)
    return re.sub(rf"(?<![\w.])(?P<sign>[-−])?(?P<n>{_NUM})(?![\w])", lambda m: _number(m, t, lang), t)


def _decade(y: int, lang: str) -> str:
    w = _n2w(y, lang, to="year")
    if w.endswith("y"):
        return w[:-1] + "ies"
    return w + "s"


def _unit(n: str, u: str) -> str:
    word = _UNITS_EN[u]
    if n == "1":
        first, _, rest = word.partition(" ")
        first = "foot" if first == "feet" else (first[:-1] if first.endswith("s") and first != "hertz" else first)
        word = f"{first} {rest}".strip()
    return word


def _time(h: int, m: int, lang: str, oclock: bool = True) -> str:
    if m == 0:
        if not oclock:
            return _n2w(h, lang)
        return f"{_n2w(h, lang)} o'clock"
    if m < 10:
        return f"{_n2w(h, lang)} oh {_n2w(m, lang)}"
    return f"{_n2w(h, lang)} {_n2w(m, lang)}"


def _fraction(a: int, b: int, lang: str) -> str:
    if b == 0 or b == 1:
        return f"{_n2w(a, lang)} over {_n2w(b, lang)}"
    if b in _FRACTIONS:
        name = _FRACTIONS[b][0 if a == 1 else 1]
    else:
        name = _n2w(b, lang, to="ordinal") + ("" if a == 1 else "s")
    return f"{_n2w(a, lang)} {name}"


def _number(m: re.Match, text: str, lang: str) -> str:
    s = m.group("n")
    sign = "minus " if m.group("sign") else ""
    if re.fullmatch(r"\d{4}", s):
        y = int(s)
        before = re.findall(r"[A-Za-z]+", text[max(0, m.start() - 20):m.start()])
        after = text[m.end():m.end() + 3]
        cue = bool(before) and before[-1].lower() in _YEAR_CUES
        if 1100 <= y <= 2099 and (cue or re.match(r"\s*(?:BC|AD|BCE|CE)\b", after)
                                  or (1500 <= y <= 2099 and re.match(r"\s*(?:[,.;:!?)]|$)", after))):
            return sign + _n2w(y, lang, to="year")
    return sign + _cardinal(s, lang)


_SYMBOLS_EN = [
    (r"\s*&\s*", " and "),
    (r"(?<=\w)\s*\+\s*(?=\w)", " plus "),
    (r"\s+\+\s+", " plus "),
    (r"\s*=\s*", " equals "),
    (r"\s+[*×]\s+", " times "),
    (r"\s+/\s+", " divided by "),
    (r"(?<=[A-Za-z])/(?=[A-Za-z])", " or "),
    (r"\s+<\s+", " less than "),
    (r"\s+>\s+", " greater than "),
    (r"°", " degrees"),
    (r"@", " at "),
    (r"\s*[—–]\s*", ", "),
    (r"\s+-\s+", ", "),
]
# (+ CJK sentence punctuation and the long-vowel mark, which Japanese / Chinese voices read as pauses or length)
_KEEP = re.compile(r"[^\W\d_]|[\s.,;:!?'\"()\-]|[。、，！？；：「」『』（）・…ー〜]", re.UNICODE)


def normalize_for_speech(text: str, lang: str = "en", max_chars: int = MAX_CHARS) -> str:
    """Written text -> text a TTS voice reads correctly. Raises ``Unspeakable`` for code, URLs/e-mails, leftover
    symbol soup, text longer than ``max_chars`` (after expansion) or nothing left to say.

    Number/symbol/abbreviation expansion is complete for English; for other languages numbers are spelled out with
    num2words where it supports the language and everything else is left to the voice's own front end.
    """
    if text is None or not text.strip():
        raise Unspeakable("empty", "no text")
    t = unicodedata.normalize("NFKC", text)
    t = t.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    why = _looks_like_code(t)
    if why:
        raise Unspeakable("code", why)
    url = _URL.search(t)
    if url:
        raise Unspeakable("url", url.group(0)[:80])
    if len(t) > 4 * max_chars:
        raise Unspeakable("too_long", f"{len(t)} characters before normalisation")
    # markdown decorations that are not code: bullets, emphasis, headings; citation marks [1]
    t = re.sub(r"(?m)^\s*[-*•]\s+", "", t)
    t = re.sub(r"\[\d+(?:\s*[,–-]\s*\d+)*\]", "", t)
    # a line break is a pause: keep it as a comma unless the line already ends with punctuation
    lines = [ln.strip() for ln in t.splitlines() if ln.strip()]
    t = " ".join(ln if i == len(lines) - 1 or ln[-1] in ".,;:!?" else ln + "," for i, ln in enumerate(lines))
    t = re.sub(r"(?m)^\s*#{1,6}\s+", "", t)
    t = re.sub(r"\*\*|__|(?<!\w)\*(?=\w)|(?<=\w)\*(?!\w)", "", t)
    if lang.startswith("en"):
        for pat, rep in _ABBREV_EN:
            t = re.sub(pat, rep, t)
        t = _expand_numbers_en(t, lang)
        for pat, rep in _SYMBOLS_EN:
            t = re.sub(pat, rep, t)
    elif lang[:2] in ("ja", "zh", "th", "ko"):  # digits sit right next to letters (no spaces): only digits bound them
        t = re.sub(rf"(?<![\d.,])({_NUM})(?![\d])", lambda m: _cardinal(m.group(1), lang), t)
    else:
        t = re.sub(rf"(?<![\w.])({_NUM})(?![\w])", lambda m: _cardinal(m.group(1), lang), t)
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\s+([,.;:!?])", r"\1", t)
    t = re.sub(r"([,;:])\1+", r"\1", t)
    letters = sum(ch.isalpha() for ch in t)
    if letters == 0:
        raise Unspeakable("empty", "nothing speakable left after normalisation")
    odd = [ch for ch in t if not _KEEP.match(ch)]
    if odd and (len(odd) > 3 or len(odd) / len(t) > 0.02):
        raise Unspeakable("symbols", f"unspeakable characters left: {''.join(sorted(set(odd)))[:20]!r}")
    if len(t) > max_chars:
        raise Unspeakable("too_long", f"{len(t)} characters > {max_chars}")
    return t


def speech_text(rec: TextInstruction, speak: Literal["instruction", "input", "both"] = "instruction") -> str:
    """The raw (not yet normalised) text to speak for a record; feed it to ``normalize_for_speech``.

    ``both`` reads the instruction, then the input as a new sentence. Never raises for a missing field: an empty
    string comes back and ``normalize_for_speech`` rejects it as ``empty``.
    """
    if speak == "instruction":
        return rec.instruction.strip()
    if speak == "input":
        return rec.input.strip()
    if speak == "both":
        ins, inp = rec.instruction.strip(), rec.input.strip()
        if ins and inp and ins[-1] not in ".?!:":
            ins += "."
        return f"{ins}\n{inp}".strip() if ins and inp else (ins or inp)
    raise ValueError(f"speak must be 'instruction', 'input' or 'both', not {speak!r}")
