"""Values as the report shows them: numbers, sizes, cut text, and embedded audio (data: URIs)."""
from __future__ import annotations

import base64
import math

MAX_AUDIO_BYTES = 8 << 20  # larger clips are not embedded (the report would get huge)
MAX_CELL_CHARS = 2000  # longer text values are cut in sample cards / tables


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}" if abs(v) >= 1e5 else str(v)
    return str(v)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def audio_mime(data: bytes | None) -> str | None:
    """MIME type of encoded audio from its magic bytes: FLAC, WAV, OGG or MP3; None if unknown."""
    if not data or len(data) < 4:
        return None
    head = bytes(data[:12])
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:3] == b"ID3" or (head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0):
        return "audio/mpeg"
    return None


def _audio(value) -> dict:
    """Template view of an audio struct {bytes, path}: a data: URI, or a note why there is no player."""
    if not isinstance(value, dict):
        return {"src": None, "note": "no audio"}
    data, path = value.get("bytes"), value.get("path")
    if not data:
        return {"src": None, "note": f"no embedded audio bytes{f' (path: {path})' if path else ''}"}
    mime = audio_mime(data)
    size = f"{len(data) / 1024:,.0f} KiB"
    if mime is None:
        return {"src": None, "note": f"unrecognised audio format ({size}, starts with {bytes(data[:4])!r})"}
    if len(data) > MAX_AUDIO_BYTES:
        return {"src": None, "note": f"{mime} clip of {size} not embedded (limit {MAX_AUDIO_BYTES >> 20} MiB)"}
    return {"src": f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", "mime": mime, "size": size,
            "note": None}


def _cut(v) -> str | None:
    if v is None:
        return None
    s = str(v)
    return s if len(s) <= MAX_CELL_CHARS else s[:MAX_CELL_CHARS] + f"… [{len(s) - MAX_CELL_CHARS:,} more chars]"


def _cut_chars(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n] + f"… [{len(s) - n:,} more chars]"
