"""The VADBackend protocol: speech regions (seconds) of a mono float32 signal."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@runtime_checkable
class VADBackend(Protocol):
    name: str  # recorded as the model identity (e.g. "silero-vad-6.2.3-onnx")

    @classmethod
    def from_config(cls, cfg: Any, **context: Any) -> "VADBackend": ...  # cfg: pipeline.core.config.VADConfig

    def speech(self, audio: "np.ndarray", sr: int) -> list[tuple[float, float]]: ...  # [(start_s, end_s), ...]
