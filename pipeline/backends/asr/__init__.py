"""ASR backends (``asr.backend`` in the profile): the registry and ``load_asr``.

- ``faster-whisper`` (default): CTranslate2 Whisper, batched across clips (pipeline.backends.asr.faster_whisper).
- ``openai-whisper``: the reference PyTorch Whisper (pipeline.backends.asr.openai_whisper).
- ``vllm``: vLLM's Whisper on GPU, no word timestamps (pipeline.backends.asr.vllm).

Every backend returns one :class:`pipeline.backends.asr.base.ASRResult` per clip; the reject filters on
those results are in pipeline.quality.asr_filters.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.backends.asr.base import ASRBackend
from pipeline.core.registry import Registry

if TYPE_CHECKING:
    from pipeline.core.config import ASRConfig

ASR: Registry[ASRBackend] = Registry("asr", ASRBackend)
ASR.add("faster-whisper", "pipeline.backends.asr.faster_whisper:FasterWhisperBackend",
        requires={"faster_whisper": "faster-whisper", "ctranslate2": "ctranslate2"},
        doc="CTranslate2 Whisper, batched across clips (CPU int8 / GPU float16)")
ASR.add("openai-whisper", "pipeline.backends.asr.openai_whisper:OpenAIWhisperBackend",
        requires={"whisper": "openai-whisper", "torch": "torch"}, doc="the reference PyTorch Whisper")
ASR.add("vllm", "pipeline.backends.asr.vllm:VLLMWhisperBackend",
        requires={"vllm": "vllm", "faster_whisper": "faster-whisper"},  # faster-whisper: its language-code list
        doc="vLLM's Whisper on GPU (no word timestamps)")


def load_asr(cfg: ASRConfig) -> ASRBackend:
    return ASR.get(cfg.backend).from_config(cfg)


__all__ = ["ASR", "ASRBackend", "load_asr"]
