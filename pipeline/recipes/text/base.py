"""Text instruction records: ``TextInstruction``, ``Reject`` and the helpers every format reader shares."""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

FORMATS = ("alpaca", "sni", "marco")
Format = Literal["auto", "alpaca", "sni", "marco"]


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


def text_field(v: Any) -> str | None:
    """A text field: str as is (stripped), None/missing -> "", anything else -> None (bad type)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v.strip()
    return None
