"""Text-to-speech: one small protocol and four backends.

* ``PiperBackend``  - Piper VITS ONNX voices (embedded ``piper-en_US-joe-medium`` on CPU; any Piper voice);
  multi-speaker models expose every speaker as a voice ``<voice>#<speaker>``.
* ``EspeakBackend`` - espeak-ng formant synthesis through its CLI; cheap, many languages, voice variants
  (``en-us``, ``en-us+f3``, ``en-gb+m3`` ...). Robotic, but a good source of voice/accent variety.
* ``CoquiBackend``  - production neural TTS through Coqui ``TTS.api.TTS``: a hub model (e.g. XTTS v2 on GPU) or a
  local checkpoint + config.json. Needs ``pip install coqui-tts==0.28.0``. No Coqui weights ship in a registry
  package: on CPU it is tested with a small VITS built from its config with random weights (tests/test_tts_coqui.py).
* ``KokoroBackend`` - Kokoro-82M (int8 ONNX, embedded ``kokoro-82m-int8``) through onnxruntime, with espeak-ng IPA
  mapped to Kokoro's phonemes; five voice styles (Japanese speakers, used for English) and weighted blends of them.

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
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .config import TTSConfig
from .models import REGISTRY, resolve

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
#: checkpoint file names tried, in order, in a local Coqui model directory (then the last checkpoint_<step>.pth)
COQUI_CHECKPOINTS = ("model.pth", "best_model.pth", "model_file.pth", "model.pt", "checkpoint.pth")


def coqui_local_model(ref: str) -> tuple[str, str] | None:
    """``(checkpoint, config.json)`` for a local Coqui model, ``None`` for a hub name (``tts_models/...``).

    A local model is a checkpoint file with ``config.json`` next to it, or a directory holding ``config.json`` and a
    checkpoint (``model.pth``, ``best_model.pth``, ... or the last ``checkpoint_<step>.pth``, as the Coqui trainer
    writes them). XTTS directories are handed over whole: XTTS loads itself from its directory. A reference that looks
    like a path but does not exist raises ``TTSError`` here rather than being sent to the hub as a model name.
    """
    p = Path(ref).expanduser()
    looks_local = p.exists() or ref.startswith(("/", ".", "~")) or p.suffix in (".pth", ".pt", ".json")
    if not looks_local:
        return None
    if not p.exists():
        raise TTSError(f"coqui: local model {ref!r} does not exist (hub models are named tts_models/<lang>/<dataset>/<model>)")
    if p.is_file():
        if p.suffix == ".json":
            raise TTSError(f"coqui: {ref!r} is a config; give the checkpoint file or the model directory")
        cfg = p.parent / "config.json"
        if not cfg.is_file():
            raise TTSError(f"coqui: no config.json next to the checkpoint {p}")
        return str(p), str(cfg)
    cfg = p / "config.json"
    if not cfg.is_file():
        raise TTSError(f"coqui: model directory {p} has no config.json")
    try:
        arch = str(json.loads(cfg.read_text()).get("model", ""))
    except (ValueError, AttributeError) as e:
        raise TTSError(f"coqui: {cfg} is not a valid model config: {e}") from e
    if "xtts" in arch.lower():
        return str(p), str(cfg)
    for name in COQUI_CHECKPOINTS:
        if (p / name).is_file():
            return str(p / name), str(cfg)
    steps = sorted(p.glob("checkpoint_*.pth"), key=lambda c: int(re.sub(r"\D", "", c.stem) or 0))
    if steps:
        return str(steps[-1]), str(cfg)
    raise TTSError(f"coqui: model directory {p} has no checkpoint ({', '.join(COQUI_CHECKPOINTS)} or checkpoint_<step>.pth)")


def coqui_random_vits(out: str | Path, speakers: list[str] | tuple[str, ...] = (), phonemes: bool = False,
                      size: str = "tiny", sample_rate: int = 16000) -> Path:
    """Write a Coqui VITS with random weights (``model.pth`` + ``config.json``) into ``out`` and return the directory.

    For tests and benchmarks of the Coqui code path where no trained Coqui weights can be had (none ship in a registry
    package): ``size="tiny"`` (~0.26 M parameters, loads and speaks noise in well under a second) or ``"full"``
    (Coqui's default VITS architecture, ~40 M parameters, 22.05 kHz like the released VITS voices: its real-time
    factor is that of a trained model of the same architecture). ``speakers`` adds a speaker embedding table;
    ``phonemes`` uses Coqui's espeak-ng phonemizer (en-us) instead of a character vocabulary.
    """
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(init_discriminator=False, use_speaker_embedding=bool(speakers))
    if size == "tiny":
        args = VitsArgs(hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2,
                        num_layers_text_encoder=1, num_layers_posterior_encoder=1, num_layers_flow=1, use_sdp=False,
                        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]],
                        upsample_rates_decoder=[8, 8, 4], upsample_initial_channel_decoder=32,
                        upsample_kernel_sizes_decoder=[16, 16, 8], speaker_embedding_channels=8, **common)
    elif size == "full":
        args = VitsArgs(**common)
        sample_rate = 22050
    else:
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    if phonemes:
        text = dict(use_phonemes=True, phonemizer="espeak", phoneme_language="en-us", text_cleaner="phoneme_cleaners")
    else:
        text = dict(use_phonemes=False, phoneme_language="en", text_cleaner="english_cleaners",
                    characters=CharactersConfig(
                        characters_class="TTS.tts.models.vits.VitsCharacters", pad="<PAD>", eos="<EOS>", bos="<BOS>",
                        blank="<BLNK>", characters="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                        punctuations="!'(),-.:;? ", phonemes=None))
    config = VitsConfig(
        model_args=args, add_blank=True, use_speaker_embedding=bool(speakers), speakers=list(speakers),
        # hop length = product of the decoder's upsample rates (256 for both sizes); no silence trimming, so
        # durations follow length_scale exactly
        audio=BaseAudioConfig(sample_rate=sample_rate, hop_length=256, win_length=1024, fft_size=1024,
                              do_trim_silence=False),
        **text,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Vits(config)
    torch.save({"model": model.state_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    return out


class CoquiBackend:
    """Coqui TTS (``TTS.api.TTS``), the production backend, e.g. ``tts_models/multilingual/multi-dataset/xtts_v2``
    on GPU, or a local model (checkpoint + ``config.json``, see ``coqui_local_model``), loaded the way Coqui's own
    ``TTS(model_path=..., config_path=...)`` loads one. Voices are the model's built-in speakers (or those given);
    ``language`` is required by multilingual models (XTTS). ``length_scale`` maps to XTTS ``speed``
    (1/length_scale), to VITS-style models' ``length_scale``, and otherwise to a time stretch.

    ``seed``: the sampling noise (VITS ``inference_noise_scale``, XTTS's GPT sampling) is drawn from a torch
    generator seeded from (seed, text, voice, length_scale), so a row is reproducible; ``None`` leaves torch's
    global RNG alone.
    """

    name = "coqui"

    def __init__(self, model_name: str, speakers: list[str] | None = None, language: str | None = None,
                 device: str = "cpu", seed: int | None = 0):
        try:
            from TTS.api import TTS
        except ImportError as e:
            raise TTSError(
                f"coqui: the Coqui TTS package is not installed; `pip install {COQUI_PIN}` "
                f"(it must not replace the pinned torch) to use backend 'coqui' ({e})"
            ) from e
        local = coqui_local_model(model_name)
        try:
            if local:
                tts = TTS(model_path=local[0], config_path=local[1], progress_bar=False)
            else:
                tts = TTS(model_name, progress_bar=False)
            self.tts = tts.to(device)
        except Exception as e:
            raise TTSError(f"coqui: cannot load model {model_name!r} on {device}: {type(e).__name__}: {e}") from e
        if self.tts.synthesizer is None or getattr(self.tts.synthesizer, "tts_model", None) is None:
            raise TTSError(f"coqui: {model_name!r} is not a text-to-speech model")
        self.model_name = model_name
        self.local = local is not None
        self.language = language
        self.device = device
        self.seed = seed
        self._lock = threading.Lock()
        model_speakers = list(self.tts.speakers or []) if self.tts.is_multi_speaker else []
        if speakers:
            if not model_speakers:
                raise TTSError(f"coqui: model {model_name} is single-speaker; tts.voices must be left at the default")
            unknown = [s for s in speakers if s not in model_speakers]
            if unknown:
                raise TTSError(f"coqui: model {model_name} has no speaker(s) {unknown}; it has e.g. {model_speakers[:5]}")
            self._voices = list(dict.fromkeys(speakers))
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

    def sample_rate(self, voice: str | None = None) -> int:
        return int(self.tts.synthesizer.output_sample_rate)

    def _check_vocabulary(self, model, text: str) -> None:
        """Coqui's character tokenizers drop characters they do not know (with a log line) and the model then speaks
        pads and blanks: raise instead when nothing but punctuation is left (e.g. Japanese text, English model)."""
        tok = getattr(model, "tokenizer", None)
        chars = getattr(tok, "characters", None)
        if chars is None or not hasattr(tok, "text_to_ids"):  # XTTS and other BPE tokenizers
            return
        try:
            ids = tok.text_to_ids(text, language=self.language)
            special = {chars.pad, chars.blank, chars.bos, chars.eos, *(chars.punctuations or "")}
            spoken = [i for i in ids if chars.id_to_char(i) not in special]
        except Exception as e:
            raise TTSError(f"coqui: cannot tokenize {text[:60]!r}: {type(e).__name__}: {e}") from e
        if not spoken:
            raise TTSError(f"coqui: no character of {text[:60]!r} is in the model's vocabulary")

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        import torch

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
        self._check_vocabulary(model, t)
        kwargs = {}
        stretch = 1.0
        is_xtts = "xtts" in self.model_name.lower() or type(model).__name__.lower() == "xtts"
        if is_xtts:
            kwargs["speed"] = 1.0 / ls
        elif ls != 1.0 and not hasattr(model, "length_scale"):
            stretch = ls
        cuda = [torch.cuda.current_device()] if self.device.startswith("cuda") and torch.cuda.is_available() else []
        try:
            with self._lock, torch.random.fork_rng(devices=cuda, enabled=self.seed is not None):
                if self.seed is not None:
                    torch.manual_seed(zlib.crc32(f"{self.seed}|{speaker}|{ls!r}|{t}".encode()))
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


# ---------------------------------------------------------------------------------------------- Kokoro

KOKORO_EMBEDDED = REGISTRY["kokoro-82m-int8"]

KOKORO_SAMPLE_RATE = 24000
KOKORO_MAX_TOKENS = 510  # the model's context is 512 positions, two of them the boundary pads

# espeak-ng IPA (--tie=^) -> Kokoro/misaki phoneme symbols. Ordered: longer sequences before their parts.
_ESPEAK_TO_KOKORO_EN = (
    ("ʔˌn\u0329", "tᵊn"), ("ʔn\u0329", "tᵊn"), ("ʔn", "tᵊn"),
    ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^ʒ", "ʤ"), ("e^ɪ", "A"), ("t^ʃ", "ʧ"), ("ɔ^ɪ", "Y"), ("ə^l", "ᵊl"),
    ("ʲo", "jo"), ("ʲə", "jə"), ("ʲ", ""), ("ɚ", "əɹ"), ("r", "ɹ"), ("x", "k"), ("ç", "k"), ("ɐ", "ə"), ("ɬ", "l"),
    ("ʔ", "t"), ("\u0303", ""),
)
_ESPEAK_TO_KOKORO_US = (("o^ʊ", "O"), ("e", "A"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
_ESPEAK_TO_KOKORO_GB = (("ə^ʊ", "Q"), ("e^ə", "ɛː"), ("e", "A"), ("iə", "ɪə"))
_ESPEAK_TO_KOKORO_OTHER = (
    ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^z", "ʣ"), ("d^ʒ", "ʤ"), ("e^ɪ", "A"), ("o^ʊ", "O"), ("ə^ʊ", "Q"), ("s^s", "S"),
    ("t^s", "ʦ"), ("t^ʃ", "ʧ"), ("ɔ^ɪ", "Y"), ("-", ""),
)
#: clause punctuation kept between phonemised clauses (Kokoro's vocabulary has it; it shapes pauses and intonation)
_CLAUSE_SPLIT = re.compile(r"([.,;:!?…—]+)(?=\s|$)")


def espeak_to_kokoro(ipa: str, voice: str = "en-us") -> str:
    """espeak-ng ``--ipa --tie=^`` output -> Kokoro's phoneme symbols (misaki's conventions: ``A`` = eɪ, ``I`` = aɪ,
    ``O`` = oʊ, ``W`` = aʊ, ``Y`` = ɔɪ, ``ʤ``/``ʧ``, ``ᵊ`` for syllabic consonants; American English drops length)."""
    v = voice.lower()
    ps = " ".join(ipa.split())
    if v.startswith("en"):
        british = not v.startswith("en-us") and v not in ("en", "en-029")
        for old, new in _ESPEAK_TO_KOKORO_EN + (_ESPEAK_TO_KOKORO_GB if british else _ESPEAK_TO_KOKORO_US):
            ps = ps.replace(old, new)
        ps = re.sub("(\\S)\u0329", "ᵊ\\1", ps).replace("\u0329", "")
        ps = ps.replace("o", "ɔ")  # espeak-ng < 1.52 writes a bare o for the thought vowel
        ps = ps.replace("ɹɹ", "ɹ")  # ɚ + linking r ("summarize" sˈʌmɚɹaɪz) would say the r twice
    else:
        for old, new in _ESPEAK_TO_KOKORO_OTHER:
            ps = ps.replace(old, new)
    return ps.replace("^", "")


def _kokoro_voice_spec(spec: str, known) -> dict[str, float]:
    """``jf_alpha`` or a blend ``jf_alpha*0.6+jm_kumo*0.4`` (weights default to 1, normalised to sum 1)."""
    mix: dict[str, float] = {}
    for part in spec.split("+"):
        name, star, w = part.strip().partition("*")
        name = name.strip()
        try:
            weight = float(w) if star else 1.0
        except ValueError:
            raise TTSError(f"kokoro: bad weight {w!r} in voice {spec!r} (expected e.g. 'jf_alpha*0.6+jm_kumo*0.4')") from None
        if name not in known:
            raise TTSError(f"kokoro: unknown voice {name!r} in {spec!r}; available: {', '.join(known)}")
        if not (np.isfinite(weight) and weight > 0):
            raise TTSError(f"kokoro: voice weight must be > 0 in {spec!r}")
        mix[name] = mix.get(name, 0.0) + weight
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items()}


class KokoroBackend:
    """Kokoro-82M (StyleTTS2-style, 24 kHz) through onnxruntime; text -> phonemes with espeak-ng (``--ipa``) mapped to
    Kokoro's symbols, so any language espeak-ng speaks can be fed (tested: English, ``en-us``).

    ``model``: a directory with ``model.onnx`` (or one ``*.onnx``), a voices file (``voices.npz`` or kokoro-onnx's
    ``voices-v1.0.bin``; an npz of ``(510, 1, 256)`` style arrays) and ``vocab.json`` (or a ``config.json`` with a
    ``vocab``). The embedded default (``embedded:kokoro-82m-int8``) has five Japanese voice styles (jf_* female,
    jm_kumo male); they speak English phonemes with a light accent. Voices are style names or blends
    (``jf_alpha*0.6+jm_kumo*0.4``); ``speed`` is the base speed, divided by ``length_scale`` per call.
    """

    name = "kokoro"

    def __init__(self, model: str = "embedded:kokoro-82m-int8", voices: list[str] | None = None,
                 phonemizer_voice: str = "en-us", speed: float = 1.0, threads: int = 2, use_cuda: bool = False,
                 espeak_binary: str = "espeak-ng", timeout_s: float = 60.0):
        import onnxruntime as ort

        self.espeak = shutil.which(espeak_binary)
        if self.espeak is None:
            raise TTSError(f"kokoro: espeak-ng ({espeak_binary!r}) is needed for phonemes (apt-get install espeak-ng)")
        self.phonemizer_voice, self.timeout_s = phonemizer_voice, timeout_s
        probe = subprocess.run([self.espeak, "-q", "--ipa", "-v", phonemizer_voice, "a"], capture_output=True,
                               text=True, timeout=30)
        if probe.returncode != 0 or not probe.stdout.strip():
            raise TTSError(f"kokoro: espeak-ng has no voice {phonemizer_voice!r} ({probe.stderr.strip()})")
        if not (np.isfinite(speed) and 0.5 <= speed <= 2.0):
            raise TTSError(f"kokoro: speed {speed} outside [0.5, 2]")
        self.speed = float(speed)
        self.model_ref = model
        root = Path(resolve(model))
        onnx_path, voices_path, vocab_path = self._files(root)
        try:
            vocab_doc = json.loads(vocab_path.read_text(encoding="utf-8"))
            self.vocab: dict[str, int] = {k: int(v) for k, v in vocab_doc["vocab"].items()}
            with np.load(voices_path) as z:
                self.styles = {k: np.asarray(z[k], dtype=np.float32).reshape(-1, 256) for k in z.files}
        except Exception as e:
            raise TTSError(f"kokoro: cannot read vocabulary {vocab_path} / voices {voices_path}: {e}") from e
        if not self.styles:
            raise TTSError(f"kokoro: no voices in {voices_path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        except Exception as e:
            raise TTSError(f"kokoro: cannot load {onnx_path}: {e}") from e
        names = {i.name for i in self.session.get_inputs()}
        if not {"tokens", "style", "speed"} <= names:
            raise TTSError(f"kokoro: {onnx_path} is not a Kokoro ONNX export (inputs {sorted(names)})")
        self._voices = list(dict.fromkeys(voices or sorted(self.styles)))
        self._mix = {v: _kokoro_voice_spec(v, list(self.styles)) for v in self._voices}

    @staticmethod
    def _files(root: Path) -> tuple[Path, Path, Path]:
        if not root.exists():
            raise TTSError(f"kokoro: model {root} does not exist")
        d = root if root.is_dir() else root.parent
        if root.is_file():
            onnx = root
        else:
            cands = [d / "model.onnx"] if (d / "model.onnx").is_file() else sorted(d.glob("*.onnx"))
            if len(cands) != 1:
                raise TTSError(f"kokoro: expected one .onnx model in {d}, found {[c.name for c in cands]}")
            onnx = cands[0]
        voices = next((p for p in [d / "voices.npz", *sorted(d.glob("voices*.npz")), *sorted(d.glob("voices*.bin"))]
                       if p.is_file()), None)
        vocab = next((p for p in (d / "vocab.json", d / "config.json") if p.is_file()), None)
        if voices is None or vocab is None:
            raise TTSError(f"kokoro: {d} needs a voices file (voices.npz / voices-v1.0.bin) and vocab.json next to {onnx.name}")
        return onnx, voices, vocab

    def voices(self) -> list[str]:
        return list(self._voices)

    def sample_rate(self, voice: str | None = None) -> int:
        return KOKORO_SAMPLE_RATE

    def gender(self, voice: str) -> str | None:
        """Kokoro voice names start with language + gender (``jf_`` Japanese female, ``am_`` American male); a blend
        takes the gender holding more than half of its weight."""
        mix = self._mix.get(voice) or _kokoro_voice_spec(voice, list(self.styles))
        f = sum(w for k, w in mix.items() if k[1:2] == "f")
        m = sum(w for k, w in mix.items() if k[1:2] == "m")
        return "female" if f > 0.5 else "male" if m > 0.5 else None

    def voice_settings(self, voice: str) -> dict:
        """What a row should record about the voice besides its name: the style mix, base speed and phonemizer."""
        mix = self._mix.get(voice) or _kokoro_voice_spec(voice, list(self.styles))
        return {"kokoro_style_mix": {k: round(w, 4) for k, w in mix.items()}, "kokoro_speed": self.speed,
                "phonemizer": f"espeak-ng:{self.phonemizer_voice}"}

    # -- text -> phonemes

    def _espeak_lines(self, lines: list[str]) -> list[str]:
        try:
            proc = subprocess.run([self.espeak, "-q", "--ipa", "--tie=^", "-v", self.phonemizer_voice],
                                  input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise TTSError(f"kokoro: espeak-ng timed out after {self.timeout_s} s") from e
        if proc.returncode != 0:
            raise TTSError(f"kokoro: espeak-ng -v {self.phonemizer_voice} exit {proc.returncode}: {proc.stderr.strip()}")
        return [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]

    def phonemize(self, text: str) -> str:
        """Text -> Kokoro phoneme string; clause punctuation (, . ; : ! ?) is kept between the phonemised clauses."""
        pieces = _CLAUSE_SPLIT.split(text)
        clauses = [(pieces[i].strip(), pieces[i + 1] if i + 1 < len(pieces) else "") for i in range(0, len(pieces), 2)]
        spoken = [c for c, _ in clauses if any(ch.isalnum() for ch in c)]
        ipa = self._espeak_lines(spoken) if spoken else []
        if len(ipa) != len(spoken):  # espeak-ng split a clause further (quotes, brackets ...): one call per clause
            ipa = [" ".join(self._espeak_lines([c])) for c in spoken]
        it = iter(ipa)
        out: list[str] = []
        for words, punct in clauses:
            ps = espeak_to_kokoro(next(it), self.phonemizer_voice) if any(ch.isalnum() for ch in words) else ""
            p = next((ch for ch in punct if ch in self.vocab), "")
            if ps or p:
                out.append(ps + p)
        return " ".join(out).strip()

    def _tokens(self, phonemes: str) -> list[list[int]]:
        """Token id chunks of at most KOKORO_MAX_TOKENS, cut after sentence or clause punctuation, else at spaces."""
        ids = [self.vocab[c] for c in phonemes if c in self.vocab]
        chunks, start = [], 0
        stops = {self.vocab.get(c) for c in ".!?"} - {None}
        commas = {self.vocab.get(c) for c in ",;:—…"} - {None}
        space = self.vocab.get(" ")
        while len(ids) - start > KOKORO_MAX_TOKENS:
            window = ids[start:start + KOKORO_MAX_TOKENS]
            cut = next((k + 1 for group in (stops, commas, {space}) for k in range(len(window) - 1, 0, -1)
                        if window[k] in group), len(window))
            chunks.append(ids[start:start + cut])
            start += cut
        chunks.append(ids[start:])
        return [c for c in chunks if any(t != space for t in c)]

    # -- synthesis

    def style(self, voice: str, n_tokens: int) -> np.ndarray:
        mix = self._mix.get(voice) or _kokoro_voice_spec(voice, list(self.styles))
        ref = sum(w * self.styles[k][min(max(n_tokens - 1, 0), self.styles[k].shape[0] - 1)] for k, w in mix.items())
        return np.asarray(ref, dtype=np.float32).reshape(1, 256)

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        t = _text(text, self.name)
        ls = _length_scale(length_scale, self.name)
        v = voice or self._voices[0]
        if v not in self._voices:
            raise TTSError(f"kokoro: unknown voice {v!r}; available: {', '.join(self._voices)}")
        speed = self.speed / ls
        if not 0.5 <= speed <= 2.0:
            raise TTSError(f"kokoro: speed {speed:.2f} (base {self.speed} / length_scale {ls}) outside [0.5, 2]")
        phonemes = self.phonemize(t)
        chunks = self._tokens(phonemes)
        if not chunks:
            raise TTSError(f"kokoro: no phonemes for {t[:60]!r} (espeak-ng voice {self.phonemizer_voice})")
        parts = []
        try:
            for ids in chunks:
                out = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                                              "style": self.style(v, len(ids)),
                                              "speed": np.array([speed], dtype=np.float32)})[0]
                parts.append(np.asarray(out, dtype=np.float32).reshape(-1))
        except Exception as e:
            raise TTSError(f"kokoro: synthesis failed for {t[:60]!r}: {type(e).__name__}: {e}") from e
        return check_audio(np.concatenate(parts), KOKORO_SAMPLE_RATE, f"kokoro[{v}]", t), KOKORO_SAMPLE_RATE


# ------------------------------------------------------------------------------------------- factory


def load_tts(cfg: TTSConfig, language: str | None = None) -> TTSBackend:
    """The backend named by ``cfg.backend``; ``embedded:`` voice refs are resolved through the model cache.

    ``language`` (the profile language) is used by multilingual Coqui models when ``cfg.coqui_language`` is unset,
    and picks Kokoro's espeak-ng phonemizer voice when ``cfg.kokoro_phonemizer`` is unset (``en`` -> ``en-us``).
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
    if cfg.backend == "kokoro":
        voices = None if cfg.voices == default_voices else cfg.voices  # the default list names Piper voices
        bad = [v for v in voices or [] if v.startswith("embedded:")]
        if bad:
            raise TTSError(f"kokoro: tts.voices must be Kokoro voice styles or blends (jf_alpha, "
                           f"jf_alpha*0.6+jm_kumo*0.4, ...), not {bad}")
        lang = (language or "en").lower()
        phonemizer = cfg.kokoro_phonemizer or ("en-us" if lang == "en" else lang)
        return KokoroBackend(cfg.kokoro_model, voices, phonemizer_voice=phonemizer, speed=cfg.kokoro_speed,
                             threads=cfg.kokoro_threads, use_cuda=cfg.device.startswith("cuda"))
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
