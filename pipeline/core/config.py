"""Language profiles: one YAML file per language under config/profiles/, validated by pydantic."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from pipeline import ROOT

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
    # files longer than this are planned as spans of about this length cut in silences (issue 18): each
    # span is a shard of its own, decoded by seeking, so memory does not grow with the file; 0 = never
    long_file_span_s: float = 600.0
    vad: VADConfig = VADConfig()


class MetadataConfig(_M):
    # voice2gender: embedded XGBoost (CPU); audeering: wav2vec2 age+gender (hub weights, gender_model), also fills age_years
    gender_backend: Literal["voice2gender", "audeering"] = "voice2gender"
    gender_model: str = "audeering/wav2vec2-large-robust-24-ft-age-gender"
    # gender from evidence (pipeline/backends/metadata/gender_evidence.py): the gender_backend classifier's P(female)
    # (logit clipped to +-gender_classifier_max_logit) + the log-likelihood ratio of the median F0 under two log-normal
    # populations, weighted; P(label) < gender_min_prob => gender null, the reason in gender_source (bench/bench_metadata.py
    # --only hard measures accuracy / abstention / calibration on the hard set). false: the raw classifier
    gender_fusion: bool = True
    gender_min_prob: float = Field(0.85, ge=0.5, le=1.0)
    gender_classifier_max_logit: float = Field(3.0, gt=0)
    gender_f0_male_hz: float = Field(120.0, gt=0)
    gender_f0_female_hz: float = Field(210.0, gt=0)
    gender_f0_octaves: float = Field(0.25, gt=0)  # width (sd of log2 F0) of each population
    gender_f0_max_llr: float = Field(8.0, gt=0)
    gender_min_voiced_frames: int = Field(20, ge=1)  # 10 ms frames: fewer => no F0 evidence (whisper, noise)
    # weights by rule (gender_evidence.py): the classifier alone (0.5 x its clipped logit <= 1.5, P <= 0.82) never
    # reaches gender_min_prob, so an answer needs the F0 to agree or at least not to contradict it
    gender_w_classifier: float = 0.5
    gender_w_f0: float = 1.0
    gender_bias: float = 0.0
    pitch_fmin: float = 60.0
    pitch_fmax: float = 400.0
    # praat: Praat autocorrelation + Viterbi via praat-parselmouth (fewest gross/octave errors on the hard set, ~170x
    # realtime per core); yin: vectorised YIN + voicing decision (300-600x, loses voiced frames in noise); pyin: librosa
    pitch_backend: Literal["praat", "yin", "pyin"] = "praat"
    # SNR: wada (embedded, blind) or brouhaha (hub weights + the brouhaha package; also fills c50_db)
    snr_backend: Literal["wada", "brouhaha"] = "wada"
    # estimates at or above this are stored as snr_db = snr_cap_db with snr_capped = true ("above N dB", seeds say
    # "clean"): WADA reads clean speech anywhere from 25 to its table top (100 dB) and underestimates above ~25 dB
    snr_cap_db: float = Field(40.0, gt=0)
    brouhaha_model: str = "pyannote/brouhaha"
    # DNSMOS P.835 (speechmos ONNX, ~2x realtime per core): opt-in
    dnsmos: bool = False
    dnsmos_batch: int = 16  # 9 s windows per onnxruntime run
    # emotion: none = left null (no speech-emotion model ships in a package); text-nrc = NRC lexicon over the
    # transcript's words (reference_text here, asr_text at export; emotion_source says text-lexicon; the NRC
    # lexicon is for research / non-commercial use); speechbrain = audio model (emotion_model, hub weights)
    emotion_backend: Literal["none", "text-nrc", "speechbrain"] = "none"
    emotion_model: str = "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"
    # accent: no accent model ships in a package, so none by default; speechbrain = CommonAccent ECAPA
    accent_backend: Literal["none", "speechbrain"] = "none"
    accent_model: str = "Jzuluaga/accent-id-commonaccent_ecapa"
    # spoken language: asr = asr_language copied at binning time; speechbrain = VoxLingua107 ECAPA on the audio
    language_backend: Literal["asr", "speechbrain"] = "asr"
    language_model: str = "speechbrain/lang-id-voxlingua107-ecapa"
    # number of speakers: resemblyzer (embedded GE2E clustering, no overlap), pyannote-segmentation /
    # pyannote-diarization (hub weights; overlap too), none
    speakers_backend: Literal["resemblyzer", "pyannote-segmentation", "pyannote-diarization", "none"] = "resemblyzer"
    speakers_model: str | None = None  # None => pyannote/segmentation-3.0 or pyannote/speaker-diarization-community-1
    speakers_threshold: float = 0.70  # resemblyzer: cosine similarity at which window clusters merge
    speakers_min_share: float = 0.20  # resemblyzer: a speaker holds at least this share of the windows
    speakers_batch_windows: int = 256
    # speaking rate: espeak-ng voice for phoneme counts when the row's language is unknown
    phonemizer_voice: str = "en-us"
    device: str = "cpu"  # production model backends: "cuda" on GPU
    model_batch_size: int = 16
    torch_threads: int = 1  # intra-op threads for torch models on CPU (one worker per core; 0 = leave torch's default)
    # text bins over the whole dataset (pipeline/dataset/bins.py): quantile edges when at least bins_min_rows
    # values exist, else fixed reference edges
    bins_method: Literal["quantile", "reference"] = "quantile"
    bins_min_rows: int = 50


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
    # faster-whisper batched: "full" = Whisper's 30 s encoder window (standard); "fit" = the batch's longest
    # clip + 1 s (at least min_window_s): several times faster on CPU, slightly less accurate (bench/bench_asr.py)
    encoder_window: Literal["full", "fit"] = "full"
    min_window_s: float = 10.0
    encoder_batch_size: int | None = None  # CPU: windows per encoder call (None => 1, fastest measured); GPU: whole batch
    word_timestamps: bool = True  # asr_words_json (not available with vllm)
    temperatures: list[float] = Field(default_factory=lambda: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])  # fallback ladder
    best_of: int = 5  # samples per clip at temperature > 0
    max_new_tokens: int | None = None  # per clip; None => the model's limit (448 tokens with the prompt)
    gpu_memory_utilization: float = 0.85  # vllm only
    # Whisper's decoding thresholds (temperature fallback, silence rule); also used by the filters
    compression_ratio_threshold: float = 2.4  # above => repetitive (fallback, then asr_repetitive)
    logprob_threshold: float = -1.0  # below => fallback; with no_speech_prob above no_speech_threshold => asr_no_speech
    no_speech_threshold: float = 0.6
    # reject filters (pipeline.quality.asr_filters.check)
    min_avg_logprob: float = -1.0  # below => asr_low_confidence
    min_language_prob: float = 0.5  # a detected language other than the profile's counts from this probability
    max_ngram_repeats: int = 3  # an n-gram (n = 1..6) said back to back more often => asr_repetitive
    max_words_per_s: float = 7.0  # more => asr_too_long (characters / 2 for zh, ja, th, ...)
    min_words_per_s: float = 0.3  # fewer, on clips of at least min_duration_for_rate_s => asr_too_short
    min_duration_for_rate_s: float = 2.0
    hallucination_phrases: list[str] | None = None  # None => pipeline.quality.asr_filters.FILLER_PHRASES


class LLMConfig(_M):
    # llama-cpp-batched: llama.cpp in process, slots sequences per decode step (CPU default); llama-cpp: llama.cpp's
    # llama-server with slots; llama-cpp-inprocess: llama-cpp-python's create_chat_completion, one at a time
    backend: Literal["llama-cpp", "llama-cpp-batched", "llama-cpp-inprocess", "vllm", "openai"] = "llama-cpp-batched"
    model: str = "embedded:qwen2.5-0.5b-instruct-q4_k_m"  # production: e.g. "Qwen/Qwen2.5-7B-Instruct"
    n_ctx: int = 2048
    n_threads: int = 2
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 200
    seed: int = 1234
    retries: int = 2  # extra attempts for malformed JSON before the row is rejected
    structured_output: bool = True  # constrain JSON answers by their schema (grammar / guided decoding)
    # llama-cpp-batched and llama-cpp (llama-server): sequences decoded together (KV cache = slots * n_ctx tokens)
    slots: int = Field(16, ge=1, le=64)
    # llama-cpp-batched: finished prompts whose KV cells are kept, so a retry of the same prompt (or another request
    # starting with the same tokens) reads only what differs; 0 turns it off
    kept_prompts: int = Field(64, ge=0, le=160)
    # shards the llm stage works on at once in one process, when its engine takes calls from several threads
    # (llama-cpp-batched, llama-cpp, openai): their requests share the decode steps, so the slots stay full
    shards_in_flight: int = Field(2, ge=1, le=16)
    server_binary: str | None = None  # None: $SPEECHINSTRUCT_LLAMA_SERVER, the `make setup` build, llama-server on PATH
    server_fallback: bool = True  # binary missing => in-process engine with a warning (False: an error)
    server_cache_ram_mib: int = 512  # llama-server's host-RAM prompt cache (bounded: memory stays flat)
    server_restarts: int = 2  # a server that dies is restarted this many times, then the shard fails
    server_start_timeout_s: float = 120.0
    # vLLM (GPU) knobs; ignored by other engines
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    # OpenAI-compatible server (vllm serve, llama.cpp server)
    base_url: str | None = None
    concurrency: int = 8  # requests in flight at once against the server
    # "json_schema": OpenAI structured outputs (vllm serve); "json_object": {"type": "json_object", "schema": ...}
    # (llama_cpp.server); "auto": json_schema, falling back to json_object when the server refuses it
    response_format: Literal["auto", "json_schema", "json_object"] = "auto"
    request_timeout_s: float = 300.0
    # SALM-style QA: pairs asked for per utterance, grounded in the transcript (reference, else ASR)
    n_qa: int = Field(3, ge=0, le=10)
    # pairs asked of one utterance: one per this many words of its transcript, at least 1, at most n_qa (a short
    # sentence holds one or two facts; asking it for three gets the same fact twice, questions that hold their
    # answer, and retries). 0: always n_qa
    qa_words_per_pair: float = Field(7.0, ge=0)
    # QA's own retry bound (None: ``retries``). 1: measured on the sample corpus over three runs, a third QA attempt
    # gave 1 kept pair of 34 for ~12 requests a run, while a third description attempt gave 2-3 descriptions a run
    qa_retries: int | None = Field(1, ge=0)
    qa_max_tokens_per_pair: int = 60  # the QA request gets n_qa * this many tokens
    # GRASS/SpeechVerse-style label tasks made from utterance columns with templates (no LLM)
    label_tasks: list[Literal["asr", "gender", "speaking_rate", "pitch", "noise_level", "language", "emotion", "accent"]] = Field(
        default_factory=lambda: ["asr", "gender", "speaking_rate", "pitch", "noise_level", "language", "emotion", "accent"])
    label_min_gender_score: float = 0.6  # voice2gender probability below this => gender_low_confidence
    label_min_language_prob: float = 0.5  # ASR language probability below this => language_low_confidence
    # quality filters (pipeline/quality/)
    description_min_words: int = 5
    description_max_words: int = 200
    qa_max_answer_words: int = 40
    qa_min_grounding: float = 0.5  # share of the answer's content words found in the transcript
    language_check: bool = True  # reject responses a language identifier (py3langid) places in another language
    output_language: str | None = None  # expected language of generated text; None => the utterance's asr_language
    judge: bool = True  # LLM judge (SALM-style filtering prompt) scores groundedness and usefulness 1-5
    judge_model: str | None = None  # None => the generation engine judges its own output
    judge_min_score: int = Field(3, ge=1, le=5)  # either score below => rejected (judge_low)
    judge_max_tokens: int = 32
    judge_temperature: float = 0.0
    dedup: bool = True  # MinHash LSH near-duplicate removal within a shard
    dedup_threshold: float = 0.8  # estimated Jaccard of character 5-gram shingles
    dedup_num_perm: int = 64
    # ---- measured quality gates (issue 14; pipeline/quality/checks.py, pipeline/stages/llm/filter.py: the llm stage
    # and `python -m pipeline filter` run the same checks). bench/bench_filter.py measures them on bench/data/.
    description_temperature: float | None = None  # None => temperature
    qa_temperature: float | None = None  # None => temperature
    min_asr_logprob: float | None = -0.5  # ASR pseudo-label with a lower avg log-prob => no description / QA from it
    max_repeated_ngram_share: float = 0.3  # share of repeated word 4-grams above => repetition
    max_compression_ratio: float = 2.4  # zlib ratio of the response above => repetition (texts of >= 100 bytes)
    leak_similarity: float = 0.6  # share of a response sentence's content words found in one prompt sentence
    description_max_novel_words: int = 4  # a description with at least this many content words that are in neither
    description_max_novel_share: float = 0.5  # the transcript nor the seed, and more than this share => novel_content
    qa_extractive: bool = False  # the answer must be (near) a span of the transcript
    qa_min_span: float = 0.8
    roundtrip: bool = True  # QA round trip: answer the question from the transcript alone, compare the answers
    roundtrip_min_f1: float = 0.5  # normalised token F1 of the two answers below => roundtrip_mismatch
    roundtrip_max_tokens: int = 24
    judge_scoring: Literal["probability", "sampled"] = "probability"  # P("Yes") from token log-probs, or sampled 1-5
    judge_min_prob: float = 0.5  # probability scoring: P(yes) below => judge_low


class TTSConfig(_M):
    backend: Literal["piper", "espeak-ng", "coqui", "kokoro"] = "piper"
    # piper: model refs/paths; espeak-ng: voices such as en-us, en-us+f3 (default list => en-us, en-us+f3);
    # coqui: speaker names (default list => the model's own speakers); kokoro: voice styles (jf_alpha, jf_gongitsune,
    # jf_nezumi, jf_tebukuro, jm_kumo) or weighted blends "jf_alpha*0.6+jm_kumo*0.4" (default list => every style)
    voices: list[str] = Field(default_factory=lambda: ["embedded:piper-en_US-joe-medium"])
    input: str | None = None  # text instruction corpus: Alpaca JSON/JSONL, Super-NaturalInstructions task, MS MARCO JSONL
    speak: Literal["instruction", "input", "both"] = "instruction"
    length_scales: list[float] = Field(default_factory=lambda: [1.0])
    max_chars: int = 400  # longer texts (after normalisation) are rejected as too_long
    pitch_shifts: list[float] = Field(default_factory=lambda: [0.0])  # semitones, for voice variety
    target_lufs: float = -23.0  # loudness of the synthesised audio
    espeak_rate: int = 150  # words per minute at length_scale 1.0 (espeak's default 175 transcribes badly)
    espeak_pitch: int = 50  # 0..99
    # hub name, or a local checkpoint (config.json next to it) / model directory; needs `pip install coqui-tts==0.28.0`
    coqui_model: str = "tts_models/multilingual/multi-dataset/xtts_v2"
    coqui_language: str | None = None  # None => the profile language
    # kokoro: dir with model.onnx + voices.npz + vocab.json (embedded: Kokoro-82M int8, 5 Japanese voice styles;
    # production: kokoro-onnx's kokoro-v1.0.onnx + voices-v1.0.bin, which has English voices)
    kokoro_model: str = "embedded:kokoro-82m-int8"
    kokoro_phonemizer: str | None = None  # espeak-ng voice for the IPA; None => en-us for "en", else the profile language
    kokoro_speed: float = 1.0  # base speed (0.5..2), divided by the row's length_scale
    kokoro_threads: int = 2  # onnxruntime intra-op threads
    device: str = "cpu"  # piper/kokoro (onnxruntime CUDA) and coqui: "cuda" on GPU
    gate_max_wer: float | None = 0.25  # round trip through the ASR stage; above => rejected (None: no gate)


class OrchestrationConfig(_M):
    """How shard tasks are run; never changes the output (not part of the profile digest)."""

    task_runner: Literal["thread", "dask"] = "thread"
    workers: int = 1  # thread pool size, or dask worker processes (each loads its own models)
    retries: int = 2  # task retries on model / I/O failures, with exponential backoff
    retry_delay_s: float = 2.0
    # cooperative runs (issue 18): a shard claim whose heartbeat is older than this is taken over (a holder
    # on this machine is checked by pid at once); the heartbeat is refreshed every claim_ttl_s / 4
    claim_ttl_s: float = 120.0
    # Prefect at scale (issue 20): shards per mapped task; None => as many as keep a stage at max_tasks tasks
    shards_per_task: int | None = Field(None, ge=1)
    max_tasks: int = Field(1000, ge=1)


class ExportConfig(_M):
    """Final tables (issue 20; pipeline/dataset/compact.py, pipeline/dataset/dedup.py)."""

    # a final part is closed at a shard boundary once it holds part_rows rows or part_mb MiB (work-part sizes)
    part_rows: int = Field(200_000, ge=1)
    part_mb: float = Field(512.0, gt=0)
    row_group_rows: int = Field(8192, ge=1)  # row groups inside a part (fewer for rows with audio: row_group_mb)
    row_group_mb: float = Field(64.0, gt=0)
    # dataset-wide near-duplicate removal across shards (MinHash LSH over character 5-grams, staged):
    # generated instructions (prompt + response) and transcripts; dropped rows go to rejects naming the kept twin
    dedup: bool = True
    dedup_threshold: float = Field(0.8, gt=0, le=1)
    dedup_num_perm: int = Field(64, ge=8)
    dedup_transcripts: bool = True
    dedup_transcript_min_chars: int = 30  # shorter transcripts ("yes", "thank you") are never duplicates
    # transcript twins must also last about as long (a re-upload of the same audio); None: the transcript alone
    # decides (drops the same sentence read by other speakers, as in read-speech corpora)
    dedup_same_duration_s: float | None = 0.25


class Profile(_M):
    language: str
    name: str
    # what the embedded models cannot do for this language (no voice of one gender, no Piper voice, a
    # phonemizer limit ...): one sentence each, written to the dataset card and the manifest (issue 16)
    limitations: list[str] = Field(default_factory=list)
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
    # speech-LM training (pipeline/train/); exclude=True keeps it out of model_dump, so out of digest()
    train: "TrainConfig" = Field(default_factory=lambda: TrainConfig(), exclude=True)
    orchestration: OrchestrationConfig = OrchestrationConfig()
    export: ExportConfig = ExportConfig()

    def digest(self) -> str:
        """Stable hash of everything that changes the output (used to refuse mixing runs)."""
        d = self.model_dump(exclude={"output_dir": True, "orchestration": True,  # export part sizes: layout only
                                     "export": {"part_rows", "part_mb", "row_group_rows", "row_group_mb"}})
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


# ---- speech-LM training (pipeline/train/, flow `train`) ---------------------------------------------
class LabelTask(_M):
    """A label scored by accuracy: a closed question derived from an utterance label (asked with the
    audio, answered by the most likely choice), and instruction rows of task `name` when the dataset
    has them (their generated answer is mapped to a class by `synonyms`)."""

    name: str
    field: str | None = None  # utterances column or labels.<key> (manifest label); None: no derived question
    fallback_field: str | None = None  # used when `field` is empty, e.g. the voice2gender prediction
    prompt: str = ""
    choices: list[str] | None = None  # None: the values seen in the data (lowercased)
    synonyms: dict[str, list[str]] = Field(default_factory=dict)  # class -> words naming it in a free answer


class TrainConfig(_M):
    """DeSTA2-style speech LM: frozen Whisper encoder -> trainable adapter -> frozen LLM (LoRA optional).

    Embedded default trains on 2 CPU cores in minutes; production: e.g. encoder
    ``openai/whisper-large-v3``, llm ``meta-llama/Llama-3.1-8B-Instruct``, device cuda, dtype bfloat16."""

    encoder: str = "embedded:whisper-base-ct2"  # embedded: CTranslate2 (frozen); hub name/dir: transformers WhisperModel encoder
    encoder_compute_type: str = "int8"  # CTranslate2 only
    # CTranslate2 only: None = Whisper's 30 s window; N = a window of N s (N * k s for clips longer than N - 1 s, at
    # most 30 s): the encoder costs ~3x less for 10 s on short clips (as the ASR stage's encoder_window "fit")
    encoder_window_s: float | None = None
    llm: str = "embedded:smollm2-135m-instruct-q4_1"  # embedded GGUF (dequantised into PyTorch) or hub name/dir
    device: str = "cpu"  # "cuda" in production
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # bfloat16 on GPU
    threads: int = 2  # torch intra-op threads on CPU
    adapter: Literal["mlp", "qformer"] = "mlp"  # mlp: frame stacking + 2-layer MLP; qformer: learned queries
    pool: int = 8  # mlp: encoder frames (50 Hz) stacked into one audio token
    # mlp: one more audio token in front, from the mean and standard deviation of the clip's encoder frames (an
    # utterance-level summary: speaker traits such as gender are global, which stacked 0.16 s frames spread out)
    summary_token: bool = True
    # DeSTA2: the LLM reads the audio embeddings followed by the Whisper transcript of the same clip (the
    # dataset's ASR pseudo-label); the shuffled-audio control then gets another clip's embeddings and transcript
    transcript_input: bool = True
    adapter_hidden: int = 1024
    qformer_queries: int = 32
    qformer_layers: int = 2
    lora_rank: int = 0  # 0: the LLM stays frozen; >0: LoRA on lora_targets (trained and checkpointed)
    lora_alpha: float = 16.0
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"])
    gradient_checkpointing: bool = False  # for 7-8B LLMs on GPU
    max_steps: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    grad_clip: float = 1.0
    checkpoint_every: int = 20
    keep_checkpoints: int = 2
    eval_checkpoint: Literal["best", "last"] = "best"  # best: lowest validation loss (early stopping); last: final step
    early_stopping_patience: int = 0  # >0: stop after this many checkpoints without a lower validation loss
    loss_average: Literal["example", "token"] = "example"  # example: each example's mean token loss weighs the same
    split_by: Literal["speaker", "source"] = "speaker"  # speaker (source_id when no speaker) or source file
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    # instruction tasks to use (+ "labels": closed questions derived from utterance labels); absent ones are skipped
    tasks: list[str] = Field(default_factory=lambda: ["description", "qa", "tts_instruction", "asr", "gender", "labels"])
    asr_prompt: str = "Transcribe the audio."
    system_prompt: str | None = None  # None: the chat template's default system turn; "" keeps the turn empty (shorter inputs)
    label_tasks: list[LabelTask] = Field(default_factory=lambda: [LabelTask(
        name="gender", field="labels.gender", fallback_field="gender", choices=["male", "female"],
        prompt="Is the speaker male or female? Answer with one word.",
        synonyms={"male": ["male", "man", "men", "masculine"], "female": ["female", "woman", "women", "feminine"]})])
    max_new_tokens: int = 64
    max_eval_examples: int | None = None  # per task, on the test split (None: all)
    max_audio_s: float = 30.0
    seed: int = 1234
    # GRASS variant (pipeline/train/grass/, `--variant grass`): GrassConfig fields, e.g.
    # {"whisper": "openai/whisper-large-v3", "lr": 1e-5, "max_steps": 2000, "batch_size": 16}
    grass: dict[str, Any] = Field(default_factory=dict)


Profile.model_rebuild()
