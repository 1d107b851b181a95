"""The GGUF header reader used for provenance agrees with the gguf package's GGUFReader on a real model file,
and says clearly when a file is not a GGUF."""
import pytest

from pipeline.core.gguf_meta import GGUFFormatError, gguf_strings
from pipeline.core.model_cache import resolve

SMOL = "embedded:smollm2-135m-instruct-q4_1"


def test_string_fields_match_gguf_reader():
    from gguf import GGUFReader

    path = resolve(SMOL)
    fields = GGUFReader(path).fields
    want = {k: bytes(f.parts[f.data[0]]).decode("utf-8", "replace") for k, f in fields.items()
            if len(f.types) == 1 and f.types[0].name == "STRING"}
    got = gguf_strings(path)
    assert got == want and "general.name" in got and "tokenizer.chat_template" in got
    assert gguf_strings(path, {"general.name"}) == {"general.name": want["general.name"]}


def test_not_a_gguf_file(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(GGUFFormatError, match="not a GGUF file"):
        gguf_strings(str(p))
