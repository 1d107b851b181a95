"""silero-vad with its ONNX weights (shipped in the silero-vad wheel)."""
from __future__ import annotations

import numpy as np


class SileroVAD:
    """silero-vad (ONNX weights shipped in the silero-vad wheel); loaded once per worker."""

    name = "silero-vad-6.2.3-onnx"

    def __init__(self, threshold: float = 0.5, min_silence_ms: int = 300, speech_pad_ms: int = 100):
        from silero_vad import load_silero_vad

        self.model = load_silero_vad(onnx=True)
        self.threshold, self.min_silence_ms, self.speech_pad_ms = threshold, min_silence_ms, speech_pad_ms

    @classmethod
    def from_config(cls, cfg, **context) -> "SileroVAD":
        """``cfg``: a VADConfig (IngestConfig.vad)."""
        return cls(cfg.threshold, cfg.min_silence_ms, cfg.speech_pad_ms)

    def speech(self, audio: np.ndarray, sr: int) -> list[tuple[float, float]]:
        import torch
        from silero_vad import get_speech_timestamps

        ts = get_speech_timestamps(
            torch.from_numpy(audio), self.model, threshold=self.threshold, sampling_rate=sr,
            min_silence_duration_ms=self.min_silence_ms, speech_pad_ms=self.speech_pad_ms,
        )
        return [(t["start"] / sr, t["end"] / sr) for t in ts]
