"""espeak-ng backend: formant synthesis through the espeak-ng CLI (a Debian binary, ``apt-get install espeak-ng``).
Cheap, many languages, voice variants (``en-us``, ``en-us+f3``, ``en-gb+m3`` ...): robotic, but a good source of
voice/accent variety."""
from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache

import numpy as np

from pipeline.backends.tts.base import (TTSError, check_audio, check_length_scale, check_text, configured_voices,
                                        reject_embedded)
from pipeline.core.config import TTSConfig


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


def _voice_table(binary: str, which: str) -> list[list[str]]:
    """The rows of ``espeak-ng --voices`` / ``--voices=variant`` with all 5 columns (Pty Language Age/Gender
    VoiceName File), header left out."""
    out = subprocess.run([binary, which], capture_output=True, text=True, timeout=30).stdout
    return [cols for cols in (line.split() for line in out.splitlines()[1:]) if len(cols) >= 5]


@lru_cache(maxsize=4)
def _espeak_variants(binary: str) -> dict[str, str]:
    """Variant name (file name in voices/!v, lower case) -> gender letter ('M'/'F'/'-')."""
    variants: dict[str, str] = {}
    for cols in _voice_table(binary, "--voices=variant"):
        if cols[4].startswith("!v/"):
            variants[cols[4][3:].lower()] = cols[2].split("/")[-1][:1]
            variants.setdefault(cols[3].lower(), cols[2].split("/")[-1][:1])
    return variants


@lru_cache(maxsize=4)
def _voice_files(binary: str) -> dict[str, str]:
    """Language name -> its espeak-ng voice file (``en-gb`` -> ``gmw/en``), formant voices only (no mbrola)."""
    files: dict[str, str] = {}
    for cols in _voice_table(binary, "--voices"):
        if not cols[4].startswith("mb/"):
            files.setdefault(cols[1].lower(), cols[4])
    return files


@lru_cache(maxsize=256)
def _say(binary: str, voice: str) -> bytes:
    """A short probe phrase in ``voice`` (cached: every variant of one language compares with the same plain voice)."""
    return subprocess.run([binary, "-v", voice, "--stdout", "hello there"], capture_output=True, timeout=30).stdout


@lru_cache(maxsize=256)
def _applied(binary: str, voice: str) -> str:
    """``voice`` as espeak-ng must be called for its variant to apply. Measured: espeak-ng 1.51 speaks
    ``en-gb+f3`` (and every ``en-gb+<variant>``) with the plain male ``en-gb`` voice, byte for byte, while
    ``gmw/en+f3``, the same voice by its file, is female (F0 ~210 Hz instead of ~100 Hz). A variant that changes
    nothing is tried by file; if that does not apply it either, the voice is refused (a "female" voice that is
    not would mislabel every row spoken with it)."""
    if "+" not in voice:
        return voice
    base, variant = voice.split("+", 1)
    plain = _say(binary, base)
    if _say(binary, voice) != plain:
        return voice
    file = _voice_files(binary).get(base.lower())
    if file and _say(binary, f"{file}+{variant}") != plain:
        return f"{file}+{variant}"
    raise TTSError(f"espeak-ng: the variant {variant!r} changes nothing in voice {voice!r} (same audio as {base!r})")


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
        # the voice espeak-ng is called with: the same name, or its voice file where the name drops the variant
        self._call = {v: _applied(exe, v) for v in self._voices}

    @classmethod
    def from_config(cls, cfg: TTSConfig, language: str | None = None) -> "EspeakBackend":
        """``tts.voices`` are espeak-ng voices; the default list (Piper voices) means ``en-us``, ``en-us+f3``."""
        voices = configured_voices(cfg)  # the default list names Piper voices
        reject_embedded(voices, "espeak-ng: tts.voices must be espeak-ng voices (en-us, en-us+f3, ...)")
        return cls(voices, rate=cfg.espeak_rate, pitch=cfg.espeak_pitch)

    def voices(self) -> list[str]:
        return list(self._voices)

    def gender(self, voice: str) -> str | None:
        """'female'/'male' from the variant (``en-us+f3`` -> female); the plain language voices are male."""
        g = _espeak_variants(self.binary).get(voice.split("+", 1)[1].lower(), "M") if "+" in voice else "M"
        return {"F": "female", "M": "male"}.get(g)

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        t = check_text(text, self.name)
        ls = check_length_scale(length_scale, self.name)
        v = voice or self._voices[0]
        if v not in self._voices:
            raise TTSError(f"espeak-ng: unknown voice {v!r}; available: {', '.join(self._voices)}")
        rate = int(round(min(max(self.rate / ls, 80), 450)))
        if v.split("+", 1)[0].lower().startswith("ja"):  # espeak-ng's Japanese voice reads kana only: kanji -> hiragana
            from pipeline.core.text import reading

            t = reading(t, "ja")
        cmd = [self.binary, "-v", self._call.get(v, v), "-s", str(rate), "-p", str(self.pitch), "-b", "1", "--stdout", "--stdin"]
        try:
            proc = subprocess.run(cmd, input=t.encode("utf-8"), capture_output=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise TTSError(f"espeak-ng: timed out after {self.timeout_s} s on {t[:60]!r}") from e
        err = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode != 0 or not proc.stdout:
            raise TTSError(f"espeak-ng -v {v}: exit {proc.returncode}: {err or 'no output'}")
        audio, sr = _parse_wav(proc.stdout)
        return check_audio(audio, sr, f"espeak-ng[{v}]", t), sr
