"""Piper backend: Piper VITS ONNX voices (embedded ``piper-en_US-joe-medium`` on CPU; any Piper voice).
Multi-speaker models expose every speaker as a voice ``<voice>#<speaker>``."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

from pipeline.backends.tts.base import TTSError, check_audio, check_length_scale, check_text
from pipeline.core.config import TTSConfig
from pipeline.core.model_cache import resolve


class PiperBackend:
    """One or more Piper ONNX voices (``<model>.onnx`` with ``<model>.onnx.json`` next to it).

    Voice names come from the voice config (``en_US-joe-medium``), falling back to the file name; speakers of a
    multi-speaker model are ``<voice>#<speaker name or id>``.
    """

    name = "piper"

    def __init__(self, model_paths: list[str] | str, use_cuda: bool = False, sentence_silence: float = 0.2,
                 deterministic: bool = False):
        self.deterministic = deterministic
        from piper import PiperVoice

        if isinstance(model_paths, (str, Path)):
            model_paths = [str(model_paths)]
        if not model_paths:
            raise TTSError("piper: no voice models given")
        self.sentence_silence = sentence_silence
        self._voices: dict[str, tuple[object, int | None]] = {}  # name -> (PiperVoice, speaker_id)
        self._lock = threading.Lock()
        for ref in model_paths:
            path = Path(resolve(ref))
            cfg_path = Path(f"{path}.json")
            if not path.is_file():
                raise TTSError(f"piper: voice model {path} (from {ref!r}) does not exist")
            if not cfg_path.is_file():
                raise TTSError(f"piper: voice config {cfg_path} is missing (expected next to the .onnx)")
            try:
                voice = PiperVoice.load(path, config_path=cfg_path, use_cuda=use_cuda)
            except Exception as e:  # onnxruntime / json errors
                raise TTSError(f"piper: cannot load voice {path}: {e}") from e
            base = self._voice_name(path, cfg_path)
            if voice.config.num_speakers > 1:
                by_id = {v: k for k, v in voice.config.speaker_id_map.items()}
                for sid in range(voice.config.num_speakers):
                    self._add(f"{base}#{by_id.get(sid, sid)}", voice, sid)
            else:
                self._add(base, voice, None)

    @classmethod
    def from_config(cls, cfg: TTSConfig, language: str | None = None) -> "PiperBackend":
        """``tts.voices`` are Piper model refs (``embedded:`` refs resolved through the model cache)."""
        return cls([resolve(v) for v in cfg.voices], use_cuda=cfg.device.startswith("cuda"))

    def _add(self, name: str, voice, speaker_id: int | None) -> None:
        n, i = name, 2
        while n in self._voices:  # the same voice listed twice, or two files with one name
            n, i = f"{name}~{i}", i + 1
        self._voices[n] = (voice, speaker_id)

    @staticmethod
    def _voice_name(path: Path, cfg_path: Path) -> str:
        try:
            c = json.loads(cfg_path.read_text())
            code, dataset, quality = c["language"]["code"], c["dataset"], c["audio"]["quality"]
            return f"{code}-{dataset}-{quality}"
        except (KeyError, TypeError, ValueError):
            stem = path.name.removesuffix(".onnx")
            return path.parent.name if stem == "model" else stem

    def voices(self) -> list[str]:
        return list(self._voices)

    def sample_rate(self, voice: str | None = None) -> int:
        return self._get(voice)[0].config.sample_rate

    def _get(self, voice: str | None):
        if voice is None:
            return next(iter(self._voices.values()))
        if voice not in self._voices:
            raise TTSError(f"piper: unknown voice {voice!r}; available: {', '.join(self._voices)}")
        return self._voices[voice]

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        t = check_text(text, self.name)
        ls = check_length_scale(length_scale, self.name)
        pv, sid = self._get(voice)
        sr = pv.config.sample_rate
        # length_scale is relative to the voice's own tuned pace (config "inference.length_scale")
        # Piper draws its VITS noise inside the ONNX graph, where it cannot be seeded: with
        # deterministic=True the noise is off (same audio on every run, but flatter and, measured
        # with the ASR gate, less intelligible), so the default keeps Piper's natural noise.
        noise = {"noise_scale": 0.0, "noise_w_scale": 0.0} if self.deterministic else {}
        syn = SynthesisConfig(speaker_id=sid, length_scale=ls * (pv.config.length_scale or 1.0), **noise)
        gap = np.zeros(int(self.sentence_silence * sr), dtype=np.float32)
        parts: list[np.ndarray] = []
        try:
            with self._lock:  # one ONNX session per voice; keep calls from threads serial
                for chunk in pv.synthesize(t, syn):
                    if parts and gap.size:
                        parts.append(gap)
                    parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1))
        except TTSError:
            raise
        except Exception as e:
            raise TTSError(f"piper: synthesis failed for {t[:60]!r}: {type(e).__name__}: {e}") from e
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        return check_audio(audio, sr, f"piper[{voice or self.voices()[0]}]", t), sr
