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
    # faster-whisper (CTranslate2); openai-whisper (PyTorch, model name or .pt checkpoint path);
    # vllm (GPU only, `pip install .[gpu]`, model is a hub name such as "openai/whisper-large-v3")
    backend: Literal["faster-whisper", "openai-whisper", "vllm"] = "faster-whisper"
    model: str = "embedded:whisper-base-ct2"  # production: e.g. "large-v3" on GPU
    device: str = "cpu"
    compute_type: str = "int8"  # "float16" on GPU
    beam_size: int = 1
    language: str | None = None  # None => detect; a code => forced
    cpu_threads: int = 2
    batched: bool = True  # False: WhisperModel.transcribe one clip at a time (reference path)
    batch_size: int = 8  # clips per encoder/decoder batch (GPU: 16-32; vllm: max_num_seqs)
    word_timestamps: bool = True  # asr_words_json (not available with vllm)
    temperatures: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])  # fallback ladder
    best_of: int = 5  # samples per clip at temperature > 0
    gpu_memory_utilization: float = 0.85  # vllm only
    # Whisper's decoding thresholds (temperature fallback, silence rule); also used by the filters
    compression_ratio_threshold: float = 2.4  # above => repetitive (fallback, then asr_repetitive)
    logprob_threshold: float = -1.0  # below => fallback; with no_speech_prob above no_speech_threshold => asr_no_speech
    no_speech_threshold: float = 0.6
    # reject filters (pipeline.asr.check)
    min_avg_logprob: float = -1.0  # below => asr_low_confidence
    min_language_prob: float = 0.5  # a detected language other than the profile's counts from this probability
    max_ngram_repeats: int = 3  # an n-gram (n = 1..6) said back to back more often => asr_repetitive
    max_words_per_s: float = 7.0  # more => asr_too_long (characters / 2 for zh, ja, th, ...)
    min_words_per_s: float = 0.3  # fewer, on clips of at least min_duration_for_rate_s => asr_too_short
    min_duration_for_rate_s: float = 2.0
    hallucination_phrases: list[str] | None = None  # None => pipeline.asr.FILLER_PHRASES


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


class OrchestrationConfig(_M):
    """How shard tasks are run; never changes the output (not part of the profile digest)."""

    task_runner: Literal["thread", "dask"] = "thread"
    workers: int = 1  # thread pool size, or dask worker processes (each loads its own models)
    retries: int = 2  # task retries on model / I/O failures, with exponential backoff
    retry_delay_s: float = 2.0


class Profile(_M):
    language: str
    name: str
    dataset: str = "corpus"  # written to instructions.dataset
    input: str | None = None  # folder of audio or a manifest (.jsonl/.csv), repo-relative; None: text (TTS) only
    output_dir: str = "data"
    shard_size: int = 8  # input files per shard
    seed: int = 1234
    ingest: IngestConfig = IngestConfig()
    metadata: MetadataConfig = MetadataConfig()
    asr: ASRConfig = ASRConfig()
    llm: LLMConfig = LLMConfig()
    tts: TTSConfig = TTSConfig()
    # speech-LM training (pipeline/train.py); exclude=True keeps it out of model_dump, so out of digest()
    train: "TrainConfig" = Field(default_factory=lambda: TrainConfig(), exclude=True)
    orchestration: OrchestrationConfig = OrchestrationConfig()

    def digest(self) -> str:
        """Stable hash of everything that changes the output (used to refuse mixing runs)."""
        d = self.model_dump(exclude={"output_dir", "orchestration"})
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
    """Load config/profiles/<lang>.yaml (or an explicit YAML path) and apply dotted overrides
    (``{"llm.max_tokens": 80}``; ``None`` values set null, so leave out keys you do not override)."""
    if path is None:
        known = known_languages()
        if not lang or lang not in known:
            raise UnknownLanguage(
                f"unknown language profile {lang!r}: LANG must be one of {', '.join(known)} "
                f"(profiles are the files in {PROFILE_DIR}); e.g. `make dataset LANG={known[0] if known else 'en'}`"
            )
        path = PROFILE_DIR / f"{lang}.yaml"
    data = yaml.safe_load(Path(path).read_text())
    for key, value in overrides.items():  # dotted keys; an explicit None sets null
        node = data
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    return Profile.model_validate(data)


# ---- speech-LM training (pipeline/train.py, flow `train`) ---------------------------------------------
class LabelTask(_M):
    """A closed question derived from an utterance label, asked with the audio and scored by accuracy."""

    name: str
    field: str  # utterances column (e.g. gender) or labels.<key> for a manifest label in labels_json
    fallback_field: str | None = None  # used when `field` is empty, e.g. the voice2gender prediction
    prompt: str
    choices: list[str] | None = None  # None: the values seen in the data (lowercased)


class TrainConfig(_M):
    """DeSTA2-style speech LM: frozen Whisper encoder -> trainable adapter -> frozen LLM (LoRA optional).

    Embedded default trains on 2 CPU cores in minutes; production: e.g. encoder
    ``openai/whisper-large-v3``, llm ``meta-llama/Llama-3.1-8B-Instruct``, device cuda, dtype bfloat16."""

    encoder: str = "embedded:whisper-base-ct2"  # embedded: CTranslate2 (frozen); hub name/dir: transformers WhisperModel encoder
    encoder_compute_type: str = "int8"  # CTranslate2 only
    llm: str = "embedded:smollm2-135m-instruct-q4_1"  # embedded GGUF (dequantised into PyTorch) or hub name/dir
    device: str = "cpu"  # "cuda" in production
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # bfloat16 on GPU
    threads: int = 2  # torch intra-op threads on CPU
    adapter: Literal["mlp", "qformer"] = "mlp"  # mlp: frame stacking + 2-layer MLP; qformer: learned queries
    pool: int = 8  # mlp: encoder frames (50 Hz) stacked into one audio token
    adapter_hidden: int = 1024
    qformer_queries: int = 32
    qformer_layers: int = 2
    lora_rank: int = 0  # 0: the LLM stays frozen; >0: LoRA on lora_targets (trained and checkpointed)
    lora_alpha: float = 16.0
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    gradient_checkpointing: bool = False  # for 7-8B LLMs on GPU
    max_steps: int = 300
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    split_by: Literal["speaker", "source"] = "speaker"  # speaker (source_id when no speaker) or source file
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    tasks: list[str] = Field(default_factory=lambda: ["description", "qa", "tts_instruction", "asr", "labels"])
    asr_prompt: str = "Transcribe the audio."
    label_tasks: list[LabelTask] = Field(default_factory=lambda: [LabelTask(
        name="gender", field="labels.gender", fallback_field="gender", choices=["male", "female"],
        prompt="Is the speaker male or female? Answer with one word.")])
    max_new_tokens: int = 64
    max_eval_examples: int | None = None  # per task, on the test split (None: all)
    max_audio_s: float = 30.0
    seed: int = 1234


Profile.model_rebuild()
