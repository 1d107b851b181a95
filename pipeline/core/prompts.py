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
