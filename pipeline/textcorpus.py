"""Text instruction corpora -> ``TextInstruction`` records, and text normalisation for TTS.

Readers (local files only, format detected from content):

* Stanford Alpaca: JSON array (or JSONL) of ``{"instruction", "input", "output"}``;
* Super-NaturalInstructions: one task file ``{"Definition": [...], "Instances": [{"id", "input", "output": [...]}]}``
  -> one record per instance;
* MS MARCO-style QA: JSONL (or a JSON array) of ``{"query_id"|"id", "query", "passages": [{"passage_text",
  "is_selected"}] | "passage", "answers": [...]}``; the official column-oriented v2.1 JSON
  (``{"query": {"0": ...}, "passages": {"0": [...]}, ...}``) is accepted too.

``read_corpus`` never raises on a bad *record*: it is returned as a reject ``(id, reason, detail)``. A file that
cannot be read or recognised raises ``ValueError`` with the reason.

``normalize_for_speech`` turns written text into something a TTS voice reads correctly (numbers, currency,
symbols, abbreviations) and raises ``Unspeakable`` (with a ``.reason`` code) for text that should not be spoken.
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

FORMATS = ("alpaca", "sni", "marco")
Format = Literal["auto", "alpaca", "sni", "marco"]

#: Default limit on the length (characters, after normalisation) of a text to speak; TTSConfig.max_chars.
MAX_CHARS = 400


class TextInstruction(BaseModel):
    id: str
    source: str
    instruction: str
    input: str = ""
    output: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class Reject(NamedTuple):
    id: str
    reason: str
    detail: str


# --------------------------------------------------------------------------------------------- reading


def _load(path: Path) -> tuple[Any, list[tuple[int, Any]] | None, list[tuple[int, int, str]]]:
    """Return (whole-file JSON or None, JSONL rows as (index, obj) or None, bad lines as (index, line_no, error))."""
    if not path.is_file():
        raise ValueError(f"text corpus {path} does not exist or is not a file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ValueError(f"text corpus {path} cannot be read: {e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"text corpus {path} is not UTF-8 text ({e})") from e
    if not text.strip():
        raise ValueError(f"text corpus {path} is empty")
    try:
        return json.loads(text), None, []
    except json.JSONDecodeError as whole_err:
        rows: list[tuple[int, Any]] = []
        bad: list[tuple[int, int, str]] = []
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        for idx, (n, line) in enumerate(lines):  # index among non-blank lines: stable ids, bad lines included
            try:
                rows.append((idx, json.loads(line)))
            except json.JSONDecodeError as e:
                bad.append((idx, n, e.msg))
        if not rows:
            raise ValueError(
                f"text corpus {path} is neither JSON nor JSONL (JSON error: {whole_err.msg} at line "
                f"{whole_err.lineno} column {whole_err.colno})"
            ) from whole_err
        return None, rows, bad


def _kind(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return None
    if "Instances" in rec and "Definition" in rec:
        return "sni"
    if "query" in rec and ("passages" in rec or "passage" in rec or "answers" in rec):
        return "marco"
    if "instruction" in rec:
        return "alpaca"
    return None


def _columns_to_rows(d: dict) -> list[dict] | None:
    """MS MARCO v2.1 official layout: {"query": {"0": q, ...}, "answers": {"0": [...]}, ...} -> rows."""
    if not isinstance(d.get("query"), dict) or not all(isinstance(v, dict) for v in d.values()):
        return None
    keys = list(d["query"].keys())
    return [{col: d[col].get(k) for col in d} for k in keys]


def detect_format(data: Any, rows: list[tuple[int, Any]] | None) -> str:
    if data is not None:
        if isinstance(data, dict):
            if _columns_to_rows(data) is not None:
                return "marco"
            k = _kind(data)
            if k:
                return k
            raise ValueError(f"unrecognised JSON object with keys {sorted(data)[:8]}")
        if isinstance(data, list):
            sample = data[:50]
        else:
            raise ValueError(f"unrecognised JSON top-level value of type {type(data).__name__}")
    else:
        sample = [obj for _, obj in (rows or [])[:50]]
    votes: dict[str, int] = {}
    for rec in sample:
        k = _kind(rec)
        if k:
            votes[k] = votes.get(k, 0) + 1
    if not votes:
        raise ValueError("no record looks like Alpaca ({instruction, input, output}), Super-NaturalInstructions "
                         "({Definition, Instances}) or MS MARCO ({query, passages, answers})")
    return max(votes, key=votes.get)


def _str(v: Any) -> str | None:
    """A text field: str as is (stripped), None/missing -> "", anything else -> None (bad type)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v.strip()
    return None


def _alpaca(records: list[tuple[str, Any]], source: str) -> tuple[list[TextInstruction], list[Reject]]:
    out: list[TextInstruction] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for idx, rec in records:
        rid = f"{source}:{idx}"
        if not isinstance(rec, dict):
            rejects.append(Reject(rid, "not_an_object", f"record is {type(rec).__name__}"))
            continue
        if rec.get("id") is not None:
            rid = f"{source}:{rec['id']}"
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "id already used by an earlier record"))
            continue
        fields = {k: _str(rec.get(k)) for k in ("instruction", "input", "output")}
        bad = [k for k, v in fields.items() if v is None]
        if bad:
            rejects.append(Reject(rid, "bad_type", f"field(s) {', '.join(bad)} must be strings"))
            continue
        if not fields["instruction"]:
            rejects.append(Reject(rid, "missing_instruction", "instruction is missing or empty"))
            continue
        if not fields["output"]:
            rejects.append(Reject(rid, "missing_output", "output is missing or empty"))
            continue
        seen.add(rid)
        meta = {k: v for k, v in rec.items() if k not in ("id", "instruction", "input", "output")}
        out.append(TextInstruction(id=rid, source=source, **fields, meta={"format": "alpaca", **meta}))
    return out, rejects


def _sni(task: dict, source: str) -> tuple[list[TextInstruction], list[Reject]]:
    out: list[TextInstruction] = []
    rejects: list[Reject] = []
    definition = task.get("Definition")
    if isinstance(definition, str):
        definition = [definition]
    if not isinstance(definition, list) or not all(isinstance(d, str) for d in definition):
        raise ValueError("Super-NaturalInstructions task: 'Definition' must be a list of strings")
    instruction = " ".join(d.strip() for d in definition if d.strip())
    instances = task.get("Instances")
    if not isinstance(instances, list):
        raise ValueError("Super-NaturalInstructions task: 'Instances' must be a list")
    task_meta = {"format": "sni"}
    for key in ("Categories", "Domains", "Input_language", "Output_language", "Instruction_language", "Source"):
        if key in task:
            task_meta[key.lower()] = task[key]
    task_meta["n_positive_examples"] = len(task.get("Positive Examples") or [])
    seen: set[str] = set()
    for idx, inst in enumerate(instances):
        rid = f"{source}:{idx}"
        if not isinstance(inst, dict):
            rejects.append(Reject(rid, "not_an_object", f"instance is {type(inst).__name__}"))
            continue
        if inst.get("id") is not None:
            rid = str(inst["id"])  # SNI ids are already globally unique ("task1557-...")
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "id already used by an earlier instance"))
            continue
        if not instruction:
            rejects.append(Reject(rid, "missing_instruction", "task Definition is empty"))
            continue
        inp = _str(inst.get("input"))
        if inp is None:
            rejects.append(Reject(rid, "bad_type", "input must be a string"))
            continue
        if not inp:
            rejects.append(Reject(rid, "missing_input", "instance input is missing or empty"))
            continue
        outputs = inst.get("output")
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            rejects.append(Reject(rid, "bad_type", "output must be a list of strings"))
            continue
        outputs = [o.strip() for o in outputs if o.strip()]
        if not outputs:
            rejects.append(Reject(rid, "missing_output", "instance has no non-empty output"))
            continue
        seen.add(rid)
        out.append(TextInstruction(id=rid, source=source, instruction=instruction, input=inp, output=outputs[0],
                                   meta={**task_meta, "outputs": outputs}))
    return out, rejects


_NO_ANSWER = {"no answer present.", "no answer present", ""}


def _marco(records: list[tuple[str, Any]], source: str) -> tuple[list[TextInstruction], list[Reject]]:
    out: list[TextInstruction] = []
    rejects: list[Reject] = []
    seen: set[str] = set()
    for idx, rec in records:
        rid = f"{source}:{idx}"
        if not isinstance(rec, dict):
            rejects.append(Reject(rid, "not_an_object", f"record is {type(rec).__name__}"))
            continue
        own = rec.get("query_id", rec.get("id"))
        if own is not None:
            rid = f"{source}:{own}"
        if rid in seen:
            rejects.append(Reject(rid, "duplicate_id", "query id already used by an earlier record"))
            continue
        query = _str(rec.get("query"))
        if not query:
            rejects.append(Reject(rid, "missing_instruction" if query == "" else "bad_type", "query is missing, empty or not a string"))
            continue
        passage = ""
        passages = rec.get("passages")
        if isinstance(passages, list) and passages:
            good = [p for p in passages if isinstance(p, dict) and isinstance(p.get("passage_text"), str)]
            chosen = next((p for p in good if p.get("is_selected") in (1, True, "1")), good[0] if good else None)
            if chosen is None:
                rejects.append(Reject(rid, "bad_type", "passages must be objects with a passage_text string"))
                continue
            passage = chosen["passage_text"].strip()
        elif passages not in (None, []):
            rejects.append(Reject(rid, "bad_type", "passages must be a list"))
            continue
        elif rec.get("passage") is not None:
            passage = _str(rec.get("passage"))
            if passage is None:
                rejects.append(Reject(rid, "bad_type", "passage must be a string"))
                continue
        answers = rec.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            rejects.append(Reject(rid, "bad_type" if answers is not None else "missing_output",
                                  "answers must be a list of strings"))
            continue
        answers = [a.strip() for a in answers if a.strip().lower() not in _NO_ANSWER]
        if not answers:
            rejects.append(Reject(rid, "no_answer", "no usable answer (empty or 'No Answer Present.')"))
            continue
        seen.add(rid)
        meta: dict[str, Any] = {"format": "marco", "answers": answers}
        if rec.get("query_type") is not None:
            meta["query_type"] = rec["query_type"]
        wfa = rec.get("wellFormedAnswers")
        if isinstance(wfa, list) and wfa:
            meta["well_formed_answers"] = wfa
        out.append(TextInstruction(id=rid, source=source, instruction=query, input=passage, output=answers[0], meta=meta))
    return out, rejects


def read_corpus(path: str | Path, format: Format = "auto", source: str | None = None
                ) -> tuple[list[TextInstruction], list[Reject]]:
    """Read a local text instruction corpus; returns (records, rejects).

    ``source`` names the corpus in ids and records (default: the file name without extension). Ids are
    ``<source>:<record id>`` when the record has one (Alpaca ``id``, MS MARCO ``query_id``/``id``), else
    ``<source>:<index>``; Super-NaturalInstructions instance ids are used unchanged (they are globally unique).
    """
    path = Path(path)
    data, rows, bad_lines = _load(path)
    fmt = detect_format(data, rows) if format == "auto" else format
    if fmt not in FORMATS:
        raise ValueError(f"unknown text corpus format {fmt!r}; expected one of {', '.join(FORMATS)} or 'auto'")
    src = source or path.name.split(".")[0]
    rejects = [Reject(f"{src}:{idx}", "bad_json", f"line {n}: {msg}") for idx, n, msg in bad_lines]
    if fmt == "sni":
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a Super-NaturalInstructions task file must be one JSON object")
        recs, rej = _sni(data, src)
        return recs, rejects + rej
    if data is not None:
        if isinstance(data, dict):
            data = _columns_to_rows(data) or [data]
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of records")
        records = [(str(i), r) for i, r in enumerate(data)]
    else:
        records = [(str(i), r) for i, r in rows]
    recs, rej = (_alpaca if fmt == "alpaca" else _marco)(records, src)
    return recs, rejects + rej


# ------------------------------------------------------------------------------------ text for speech


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


def _n2w(value, lang: str, **kw) -> str:
    from num2words import num2words

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
_KEEP = re.compile(r"[^\W\d_]|[\s.,;:!?'\"()\-]", re.UNICODE)


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
