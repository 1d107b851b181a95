"""Voice activity detection backends: the ``VAD`` registry and ``load_vad``."""
from __future__ import annotations

from pipeline.backends.vad.base import VADBackend
from pipeline.core.registry import Registry

VAD: Registry[VADBackend] = Registry("vad", VADBackend)
VAD.add("silero-onnx", "pipeline.backends.vad.silero:SileroVAD",
        requires={"silero_vad": "silero-vad", "onnxruntime": "onnxruntime", "torch": "torch"},
        doc="silero-vad 6 with the ONNX weights from its wheel (CPU)")


def load_vad(cfg) -> VADBackend:
    """The VAD backend ``cfg.backend`` names, built from ``cfg`` (a VADConfig)."""
    return VAD.get(cfg.backend).from_config(cfg)
