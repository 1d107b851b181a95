"""Language profiles: one YAML file per language under config/profiles/, validated by pydantic."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from . import ROOT

PROFILE_DIR = ROOT / "config" / "profiles"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VADConfig(_M):
    backend: Literal["silero-onnx"] = "silero-onnx"
    threshold: float = 0.5
    min_silence_ms: int = 300
    speech_pad_ms: int = 100


class IngestConfig(_M):
    sample_rate: int = 16000
    min_duration_s: float = 1.0  # shorter utterances are rejected (too_short)
    max_duration_s: float = 30.0  # segments are never longer than this
    segment_min_s: float = 2.0  # files longer than max_duration_s are cut into segment_min_s..max_duration_s pieces
    silence_dbfs: float = -60.0  # whole-file RMS below this => rejected as silent
    min_speech_ratio: float = 0.05  # VAD speech share below this => rejected as no_speech
    vad: VADConfig = VADConfig()


class MetadataConfig(_M):
    gender_backend: Literal["voice2gender"] = "voice2gender"
    pitch_fmin: float = 60.0
    pitch_fmax: float = 400.0
    # yin: vectorised YIN + voicing decision (300-600x realtime per core); pyin: librosa.pyin (~20x)
    pitch_backend: Literal["yin", "pyin"] = "yin"


class ASRConfig(_M):
    backend: Literal["faster-whisper"] = "faster-whisper"
    model: str = "embedded:whisper-base-ct2"  # production: e.g. "large-v3" on GPU
    device: str = "cpu"
    compute_type: str = "int8"  # "float16" on GPU
    beam_size: int = 1
    language: str | None = None  # None => detect; a code => forced
    cpu_threads: int = 2


class LLMConfig(_M):
    backend: Literal["llama-cpp", "vllm", "openai"] = "llama-cpp"
    model: str = "embedded:qwen2.5-0.5b-instruct-q4_k_m"  # production: e.g. "Qwen/Qwen2.5-7B-Instruct"
    n_ctx: int = 2048
    n_threads: int = 2
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 200
    seed: int = 1234
    retries: int = 2  # extra attempts for malformed JSON before the row is rejected
    structured_output: bool = True  # constrain JSON answers by their schema (grammar / guided decoding)
    # vLLM (GPU) knobs; ignored by other engines
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    # OpenAI-compatible server (vllm serve, llama.cpp server)
    base_url: str | None = None


class TTSConfig(_M):
    backend: Literal["piper", "espeak-ng", "coqui"] = "piper"
    # piper: model refs/paths; espeak-ng: voices such as en-us, en-us+f3 (default list => en-us, en-us+f3);
    # coqui: speaker names (default list => the model's own speakers)
    voices: list[str] = Field(default_factory=lambda: ["embedded:piper-en_US-joe-medium"])
    input: str | None = None  # text instruction corpus: Alpaca JSON/JSONL, Super-NaturalInstructions task, MS MARCO JSONL
    speak: Literal["instruction", "input", "both"] = "instruction"
    length_scales: list[float] = Field(default_factory=lambda: [1.0])
    max_chars: int = 400  # longer texts (after normalisation) are rejected as too_long
    pitch_shifts: list[float] = Field(default_factory=lambda: [0.0])  # semitones, for voice variety
    target_lufs: float = -23.0  # loudness of the synthesised audio
    espeak_rate: int = 150  # words per minute at length_scale 1.0 (espeak's default 175 transcribes badly)
    espeak_pitch: int = 50  # 0..99
    coqui_model: str = "tts_models/multilingual/multi-dataset/xtts_v2"  # needs `pip install coqui-tts==0.28.0`
    coqui_language: str | None = None  # None => the profile language
    device: str = "cpu"  # piper (onnxruntime CUDA) and coqui: "cuda" on GPU
    gate_max_wer: float | None = 0.25  # round trip through the ASR stage; above => rejected (None: no gate)


class Profile(_M):
    language: str
    name: str
    dataset: str = "corpus"  # written to instructions.dataset
    input: str  # folder of audio or a manifest (.jsonl/.csv); relative paths are from the repo root
    output_dir: str = "data"
    shard_size: int = 8  # input files per shard
    seed: int = 1234
    ingest: IngestConfig = IngestConfig()
    metadata: MetadataConfig = MetadataConfig()
    asr: ASRConfig = ASRConfig()
    llm: LLMConfig = LLMConfig()
    tts: TTSConfig = TTSConfig()

    def digest(self) -> str:
        """Stable hash of everything that changes the output (used to refuse mixing runs)."""
        d = self.model_dump(exclude={"output_dir"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, p: str | None) -> Path | None:
        if p is None:
            return None
        q = Path(p)
        return q if q.is_absolute() else (ROOT / q)


def known_languages() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


class UnknownLanguage(ValueError):
    pass


def load_profile(lang: str | None, path: str | Path | None = None, **overrides) -> Profile:
    """Load config/profiles/<lang>.yaml (or an explicit YAML path) and apply dotted overrides."""
    if path is None:
        known = known_languages()
        if not lang or lang not in known:
            raise UnknownLanguage(
                f"unknown language profile {lang!r}: LANG must be one of {', '.join(known)} "
                f"(profiles are the files in {PROFILE_DIR}); e.g. `make dataset LANG={known[0] if known else 'en'}`"
            )
        path = PROFILE_DIR / f"{lang}.yaml"
    data = yaml.safe_load(Path(path).read_text())
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return Profile.model_validate(data)
