"""Text-to-speech: one small protocol and three backends.

* ``PiperBackend``  - Piper VITS ONNX voices (embedded ``piper-en_US-joe-medium`` on CPU; any Piper voice);
  multi-speaker models expose every speaker as a voice ``<voice>#<speaker>``.
* ``EspeakBackend`` - espeak-ng formant synthesis through its CLI; cheap, many languages, voice variants
  (``en-us``, ``en-us+f3``, ``en-gb+m3`` ...). Robotic, but a good source of voice/accent variety.
* ``CoquiBackend``  - production neural TTS through Coqui ``TTS.api.TTS`` (e.g. XTTS v2 on GPU). Needs
  ``pip install coqui-tts==0.28.0`` (not part of the CPU set).

Every backend returns mono float32 audio in [-1, 1] and its sample rate, and raises ``TTSError`` when synthesis
fails or the result is empty, silent or not finite. Helpers for augmentation: ``loudness_normalize``,
``pitch_shift``, ``resample``.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .config import TTSConfig
from .models import resolve

#: Audio whose peak stays below this is "silent" (about -80 dBFS).
SILENCE_PEAK = 1e-4


class TTSError(RuntimeError):
    pass


@runtime_checkable
class TTSBackend(Protocol):
    name: str

    def voices(self) -> list[str]: ...

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]: ...


def check_audio(audio: np.ndarray, sr: int, who: str, text: str) -> np.ndarray:
    """Validate synthesised audio and return it as mono float32 clipped to [-1, 1]; raise TTSError otherwise."""
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:
        a = a.mean(axis=1 if a.shape[1] < a.shape[0] else 0)
    a = a.reshape(-1)
    snippet = text if len(text) <= 60 else text[:57] + "..."
    if a.size == 0:
        raise TTSError(f"{who}: synthesis returned no audio for {snippet!r}")
    if not np.all(np.isfinite(a)):
        raise TTSError(f"{who}: synthesis returned non-finite samples (NaN/inf) for {snippet!r}")
    if float(np.max(np.abs(a))) < SILENCE_PEAK:
        raise TTSError(f"{who}: synthesis returned silence ({a.size / sr:.2f} s) for {snippet!r}")
    if sr <= 0:
        raise TTSError(f"{who}: invalid sample rate {sr}")
    return np.clip(a, -1.0, 1.0)


def _text(text: str | None, who: str) -> str:
    t = (text or "").strip()
    if not t or not any(ch.isalnum() for ch in t):
        raise TTSError(f"{who}: nothing to synthesise (empty text {text!r})")
    return t


def _length_scale(length_scale: float, who: str) -> float:
    if not (np.isfinite(length_scale) and 0.25 <= length_scale <= 4.0):
        raise TTSError(f"{who}: length_scale {length_scale} outside [0.25, 4]")
    return float(length_scale)


# ----------------------------------------------------------------------------------------------- Piper


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

        t = _text(text, self.name)
        ls = _length_scale(length_scale, self.name)
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


# -------------------------------------------------------------------------------------------- espeak-ng


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """PCM WAV bytes -> (float32 mono, sr). Tolerates the bogus RIFF/data sizes espeak-ng writes when streaming."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TTSError(f"espeak-ng: output is not a WAV stream ({len(data)} bytes)")
    pos, sr, channels, bits = 12, 0, 1, 16
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            fmt = int.from_bytes(data[body:body + 2], "little")
            channels = int.from_bytes(data[body + 2:body + 4], "little")
            sr = int.from_bytes(data[body + 4:body + 8], "little")
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            if fmt != 1 or bits != 16:
                raise TTSError(f"espeak-ng: unsupported WAV format (format {fmt}, {bits} bits)")
        elif cid == b"data":
            end = len(data) if size == 0 or body + size > len(data) else body + size
            pcm = data[body:end]
            pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
            a = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
            if channels > 1:
                a = a.reshape(-1, channels).mean(axis=1)
            if not sr:
                raise TTSError("espeak-ng: WAV stream has no fmt chunk before data")
            return a, sr
        pos = body + size + (size & 1)
    raise TTSError("espeak-ng: WAV stream has no data chunk")


@lru_cache(maxsize=4)
def _espeak_variants(binary: str) -> dict[str, str]:
    """Variant name (file name in voices/!v, lower case) -> gender letter ('M'/'F'/'-')."""
    out = subprocess.run([binary, "--voices=variant"], capture_output=True, text=True, timeout=30).stdout
    variants: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[4].startswith("!v/"):
            variants[cols[4][3:].lower()] = cols[2].split("/")[-1][:1]
            variants.setdefault(cols[3].lower(), cols[2].split("/")[-1][:1])
    return variants


class EspeakBackend:
    """espeak-ng through its CLI. ``rate`` is words per minute at ``length_scale=1`` (espeak's own default, 175,
    is hard to understand; 150 transcribes much better), ``pitch`` 0..99 (50 = voice default)."""

    name = "espeak-ng"

    def __init__(self, voices: list[str] | None = None, rate: int = 150, pitch: int = 50, binary: str = "espeak-ng",
                 timeout_s: float = 60.0):
        exe = shutil.which(binary)
        if exe is None:
            raise TTSError(f"espeak-ng: executable {binary!r} not found (Debian/Ubuntu: apt-get install espeak-ng)")
        self.binary, self.rate, self.pitch, self.timeout_s = exe, int(rate), int(pitch), timeout_s
        self._voices = list(dict.fromkeys(voices or ["en-us", "en-us+f3"]))
        if not (80 <= self.rate <= 450):
            raise TTSError(f"espeak-ng: rate {rate} wpm outside 80..450")
        if not (0 <= self.pitch <= 99):
            raise TTSError(f"espeak-ng: pitch {pitch} outside 0..99")
        variants = _espeak_variants(exe)
        for v in self._voices:
            if not re.fullmatch(r"[A-Za-z0-9_-]+(\+[A-Za-z0-9_ -]+)?", v):
                raise TTSError(f"espeak-ng: malformed voice {v!r} (expected e.g. 'en-us' or 'en-us+f3')")
            if "+" in v and v.split("+", 1)[1].lower() not in variants:
                raise TTSError(f"espeak-ng: unknown voice variant in {v!r}; see `espeak-ng --voices=variant`")
            probe = subprocess.run([exe, "-v", v, "-q", "a"], capture_output=True, text=True, timeout=30)
            if probe.returncode != 0:  # unknown language voice ("zz"); espeak-ng falls back silently for "en-zz"
                raise TTSError(f"espeak-ng: voice {v!r} does not exist ({probe.stderr.strip()}); "
                               "see `espeak-ng --voices`")

    def voices(self) -> list[str]:
        return list(self._voices)

    def gender(self, voice: str) -> str | None:
        """'female'/'male' from the variant (``en-us+f3`` -> female); the plain language voices are male."""
        g = _espeak_variants(self.binary).get(voice.split("+", 1)[1].lower(), "M") if "+" in voice else "M"
        return {"F": "female", "M": "male"}.get(g)

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        t = _text(text, self.name)
        ls = _length_scale(length_scale, self.name)
        v = voice or self._voices[0]
        if v not in self._voices:
            raise TTSError(f"espeak-ng: unknown voice {v!r}; available: {', '.join(self._voices)}")
        rate = int(round(min(max(self.rate / ls, 80), 450)))
        cmd = [self.binary, "-v", v, "-s", str(rate), "-p", str(self.pitch), "-b", "1", "--stdout", "--stdin"]
        try:
            proc = subprocess.run(cmd, input=t.encode("utf-8"), capture_output=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise TTSError(f"espeak-ng: timed out after {self.timeout_s} s on {t[:60]!r}") from e
        err = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or not proc.stdout:
            raise TTSError(f"espeak-ng -v {v}: exit {proc.returncode}: {err or 'no output'}")
        audio, sr = _parse_wav(proc.stdout)
        return check_audio(audio, sr, f"espeak-ng[{v}]", t), sr


# ----------------------------------------------------------------------------------------------- Coqui

COQUI_PIN = "coqui-tts==0.28.0"


class CoquiBackend:
    """Coqui TTS (``TTS.api.TTS``), the production backend, e.g. ``tts_models/multilingual/multi-dataset/xtts_v2``
    on GPU. Voices are the model's built-in speakers (or those given); ``language`` is required by multilingual
    models (XTTS). ``length_scale`` maps to XTTS ``speed`` (1/length_scale), to VITS-style models'
    ``length_scale``, and otherwise to a time stretch.
    """

    name = "coqui"

    def __init__(self, model_name: str, speakers: list[str] | None = None, language: str | None = None,
                 device: str = "cpu"):
        try:
            from TTS.api import TTS
        except ImportError as e:
            raise TTSError(
                f"coqui: the Coqui TTS package is not installed; `pip install {COQUI_PIN}` "
                f"(it must not replace the pinned torch) to use backend 'coqui' ({e})"
            ) from e
        try:
            self.tts = TTS(model_name, progress_bar=False).to(device)
        except Exception as e:
            raise TTSError(f"coqui: cannot load model {model_name!r} on {device}: {e}") from e
        self.model_name = model_name
        self.language = language
        self._lock = threading.Lock()
        model_speakers = list(self.tts.speakers or []) if self.tts.is_multi_speaker else []
        if speakers:
            unknown = [s for s in speakers if model_speakers and s not in model_speakers]
            if unknown:
                raise TTSError(f"coqui: model {model_name} has no speaker(s) {unknown}; it has e.g. {model_speakers[:5]}")
            self._voices = list(speakers)
        else:
            self._voices = model_speakers
        self.multi_speaker = bool(self._voices)
        if self.tts.is_multi_lingual:
            if not language:
                raise TTSError(f"coqui: model {model_name} is multilingual; give a language (e.g. 'en')")
            langs = self.tts.languages or []
            if langs and language not in langs:
                raise TTSError(f"coqui: model {model_name} does not support language {language!r}; it has {langs}")
        else:
            self.language = None

    def voices(self) -> list[str]:
        return self._voices or ["default"]

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        t = _text(text, self.name)
        ls = _length_scale(length_scale, self.name)
        speaker = None
        if self.multi_speaker:
            speaker = voice or self._voices[0]
            if speaker not in self._voices:
                raise TTSError(f"coqui: unknown voice {speaker!r}; available: {', '.join(self._voices[:10])} ...")
        elif voice not in (None, "default"):
            raise TTSError(f"coqui: model {self.model_name} is single-speaker; voice must be None or 'default'")
        synth = self.tts.synthesizer
        model = synth.tts_model
        kwargs = {}
        stretch = 1.0
        is_xtts = "xtts" in self.model_name.lower() or type(model).__name__.lower() == "xtts"
        if is_xtts:
            kwargs["speed"] = 1.0 / ls
        elif ls != 1.0 and not hasattr(model, "length_scale"):
            stretch = ls
        try:
            with self._lock:
                saved = getattr(model, "length_scale", None)
                if not is_xtts and saved is not None:
                    model.length_scale = ls * saved
                try:
                    wav = self.tts.tts(text=t, speaker=speaker, language=self.language, **kwargs)
                finally:
                    if not is_xtts and saved is not None:
                        model.length_scale = saved
        except Exception as e:
            raise TTSError(f"coqui: synthesis failed for {t[:60]!r}: {type(e).__name__}: {e}") from e
        sr = int(synth.output_sample_rate)
        audio = np.asarray(wav, dtype=np.float32).reshape(-1)
        if stretch != 1.0 and audio.size:
            import librosa

            audio = librosa.effects.time_stretch(audio, rate=1.0 / stretch)
        return check_audio(audio, sr, f"coqui[{speaker or 'default'}]", t), sr


# ------------------------------------------------------------------------------------------- factory


def load_tts(cfg: TTSConfig, language: str | None = None) -> TTSBackend:
    """The backend named by ``cfg.backend``; ``embedded:`` voice refs are resolved through the model cache.

    ``language`` (the profile language) is used by multilingual Coqui models when ``cfg.coqui_language`` is unset.
    """
    default_voices = TTSConfig.model_fields["voices"].default_factory()
    if cfg.backend == "piper":
        return PiperBackend([resolve(v) for v in cfg.voices], use_cuda=cfg.device.startswith("cuda"))
    if cfg.backend == "espeak-ng":
        voices = None if cfg.voices == default_voices else cfg.voices  # the default list names Piper voices
        bad = [v for v in voices or [] if v.startswith("embedded:")]
        if bad:
            raise TTSError(f"espeak-ng: tts.voices must be espeak-ng voices (en-us, en-us+f3, ...), not {bad}")
        return EspeakBackend(voices, rate=cfg.espeak_rate, pitch=cfg.espeak_pitch)
    if cfg.backend == "coqui":
        speakers = None if cfg.voices == default_voices else cfg.voices
        return CoquiBackend(cfg.coqui_model, speakers=speakers, language=cfg.coqui_language or language,
                            device=cfg.device)
    raise TTSError(f"unknown TTS backend {cfg.backend!r}")


# ------------------------------------------------------------------------------------------- helpers


def resample(audio: np.ndarray, sr: int, target_sr: int = 16000) -> np.ndarray:
    """Resample mono float audio (soxr, high quality); a no-op when the rates match."""
    a = np.asarray(audio, dtype=np.float32)
    if sr == target_sr:
        return a
    import librosa

    return librosa.resample(a, orig_sr=sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def loudness_normalize(audio: np.ndarray, sr: int, target_lufs: float = -23.0, peak: float = 0.99) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness (ITU-R BS.1770, pyloudnorm); the gain is lowered if needed so
    no sample exceeds ``peak``. Clips shorter than one 400 ms gating block are measured by RMS instead."""
    import pyloudnorm as pyln

    a = np.asarray(audio, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.max(np.abs(a)) < SILENCE_PEAK:
        raise ValueError("loudness_normalize: audio is empty, silent or not finite")
    if a.size >= int(0.4 * sr) + 1:
        loudness = pyln.Meter(sr).integrated_loudness(a)
    else:
        loudness = 20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-12) - 0.691
    if not np.isfinite(loudness):  # every block gated out: fall back to RMS
        loudness = 20 * np.log10(np.sqrt(np.mean(a ** 2)) + 1e-12) - 0.691
    gain = 10 ** ((target_lufs - loudness) / 20)
    top = np.max(np.abs(a)) * gain
    if top > peak:
        gain *= peak / top
    return (a * gain).astype(np.float32)


def pitch_shift(audio: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Shift pitch by ``semitones`` keeping duration (librosa phase vocoder + resampling)."""
    a = np.asarray(audio, dtype=np.float32)
    if semitones == 0:
        return a.copy()
    import librosa

    return np.clip(librosa.effects.pitch_shift(a, sr=sr, n_steps=float(semitones)), -1.0, 1.0).astype(np.float32)
