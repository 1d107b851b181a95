"""Prompt templates: Jinja files under prompts/, with a content hash for provenance."""
from __future__ import annotations

import hashlib
from functools import lru_cache

import jinja2

from pipeline import ROOT

PROMPT_DIR = ROOT / "prompts"


@lru_cache(maxsize=1)
def env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROMPT_DIR)), undefined=jinja2.StrictUndefined,
                              autoescape=False, keep_trailing_newline=False, trim_blocks=True)


def render(name: str, **kw) -> str:
    return env().get_template(name).render(**kw).strip()


def template_hash(*names: str) -> str:
    h = hashlib.sha256()
    for n in names:
        h.update((PROMPT_DIR / n).read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def lines(name: str) -> tuple[str, ...]:
    return tuple(l.strip() for l in (PROMPT_DIR / name).read_text().splitlines() if l.strip() and not l.startswith("#"))


# ---- per-language prompt files (issue 16) ---------------------------------------------------------------
# A language's variant of ``name`` lives next to it in a folder named by the language code:
# ``prompts/<lang>/desta_system.j2`` for ``desta_system.j2``, ``prompts/tasks/<lang>/gender.txt`` for
# ``tasks/gender.txt``. ``localized`` returns the variant when it exists, else the default (English) file,
# so a new language works with its profile alone and gains prompts file by file.
def localized(name: str, language: str | None) -> str:
    """The prompt file for ``language`` (``prompts/<dir>/<lang>/<file>``), else ``name`` itself."""
    lang = (language or "").replace("_", "-").lower()
    if not lang or lang.split("-")[0] == "en":
        return name
    head, _, tail = name.rpartition("/")
    for code in dict.fromkeys((lang, lang.split("-")[0])):
        cand = f"{head}/{code}/{tail}" if head else f"{code}/{tail}"
        if (PROMPT_DIR / cand).is_file():
            return cand
    return name


def fallbacks(names: list[str] | tuple[str, ...], language: str | None) -> list[str]:
    """The prompt files among ``names`` that have no variant for ``language`` (the default is used)."""
    lang = (language or "").split("-")[0].lower()
    if not lang or lang == "en":
        return []
    return [n for n in names if localized(n, language) == n]
