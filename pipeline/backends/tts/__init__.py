"""Text-to-speech backends: the ``TTS`` registry and ``load_tts``.

* ``piper``     - Piper VITS ONNX voices (pipeline.backends.tts.piper)
* ``espeak-ng`` - espeak-ng formant synthesis through its CLI, a Debian binary (pipeline.backends.tts.espeak)
* ``coqui``     - Coqui ``TTS.api.TTS``: hub models (XTTS v2) or local checkpoints (pipeline.backends.tts.coqui)
* ``kokoro``    - Kokoro-82M ONNX with espeak-ng phonemes (pipeline.backends.tts.kokoro)

The protocol and ``TTSError`` are in ``pipeline.backends.tts.base``, loudness and pitch helpers in ``dsp``.
Kept light: backends are imported only when asked for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.backends.tts.base import TTSBackend
from pipeline.core.registry import Registry

if TYPE_CHECKING:
    from pipeline.core.config import TTSConfig

TTS: Registry[TTSBackend] = Registry("tts", TTSBackend)
TTS.add("piper", "pipeline.backends.tts.piper:PiperBackend", requires={"piper": "piper-tts"},
        doc="Piper VITS ONNX voices (embedded en_US-joe-medium)")
TTS.add("espeak-ng", "pipeline.backends.tts.espeak:EspeakBackend",
        doc="espeak-ng formant synthesis (Debian package espeak-ng)")
TTS.add("coqui", "pipeline.backends.tts.coqui:CoquiBackend", requires={"TTS": "coqui-tts==0.28.0"},
        doc="Coqui TTS: hub model (XTTS v2 on GPU) or local checkpoint + config.json")
TTS.add("kokoro", "pipeline.backends.tts.kokoro:KokoroBackend", requires={"onnxruntime": "onnxruntime"},
        doc="Kokoro-82M int8 ONNX with espeak-ng phonemes (embedded kokoro-82m-int8)")


def load_tts(cfg: "TTSConfig", language: str | None = None) -> TTSBackend:
    """The backend named by ``cfg.backend``; ``language`` (the profile language) is used by multilingual Coqui models
    when ``cfg.coqui_language`` is unset, and picks Kokoro's phonemizer voice when ``cfg.kokoro_phonemizer`` is unset."""
    return TTS.get(cfg.backend).from_config(cfg, language=language)
