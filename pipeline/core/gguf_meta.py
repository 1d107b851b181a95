"""The string fields of a GGUF file's header (``general.name``, ``general.basename``, ...), read without
loading the file: the header is walked key by key and arrays (the 150k-token vocabulary) are skipped by
their lengths. gguf's GGUFReader builds every field as numpy views, ~20 s of CPU for a Qwen vocabulary,
which the llm stage paid in the middle of a shard while llama.cpp needed the cores."""
from __future__ import annotations

import mmap
import struct

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY = 8, 9


class GGUFFormatError(ValueError):
    """Not a GGUF file, or a header this reader does not understand."""


def gguf_strings(path: str, keys: set[str] | None = None) -> dict[str, str]:
    """The string-valued header fields of the GGUF at ``path`` (only ``keys`` when given)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"GGUF":
            raise GGUFFormatError(f"{path}: not a GGUF file")
        version = struct.unpack_from("<I", m, 4)[0]
        if version < 2:
            raise GGUFFormatError(f"{path}: GGUF version {version} is not supported")
        _n_tensors, n_kv = struct.unpack_from("<QQ", m, 8)
        off, out = 24, {}

        def string(o: int) -> tuple[str, int]:
            n = struct.unpack_from("<Q", m, o)[0]
            return m[o + 8:o + 8 + n].decode("utf-8", "replace"), o + 8 + n

        def skip(t: int, o: int) -> int:
            if t in _SCALAR:
                return o + _SCALAR[t]
            if t == _STRING:
                return o + 8 + struct.unpack_from("<Q", m, o)[0]
            if t == _ARRAY:
                et, count = struct.unpack_from("<IQ", m, o)
                o += 12
                if et in _SCALAR:
                    return o + _SCALAR[et] * count
                for _ in range(count):
                    o = skip(et, o)
                return o
            raise GGUFFormatError(f"{path}: unknown GGUF value type {t} at byte {o}")

        for _ in range(n_kv):
            key, off = string(off)
            t = struct.unpack_from("<I", m, off)[0]
            off += 4
            if t == _STRING and (keys is None or key in keys):
                out[key], off = string(off)
            else:
                off = skip(t, off)
            if keys is not None and keys <= out.keys():
                break
        return out


__all__ = ["GGUFFormatError", "gguf_strings"]
