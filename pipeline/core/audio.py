"""Audio decoding, resampling and encoding. Every failure is an AudioError with a reason code."""
from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000  # every utterance is stored at this rate
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".webm", ".aiff", ".aif", ".mp4"}


class AudioError(ValueError):
    """A file that cannot become an utterance. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _ffmpeg_decode(path: Path, sample_rate: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioError("unreadable", f"{path.name}: soundfile cannot read it and ffmpeg is not installed")
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"],
        capture_output=True, timeout=600,
    )
    msg = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        raise AudioError("corrupt", f"ffmpeg cannot decode {path.name}: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    if msg:  # ffmpeg decodes what it can of a damaged file and exits 0: a partial clip is not kept
        raise AudioError("corrupt", f"{path.name} is damaged (ffmpeg: {msg[0][:200]}; {len(msg)} error line(s))")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def resample(audio: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float audio (soxr, high quality, through librosa); a no-op when the rates match.
    The one resampler of the project: ingest, TTS, speaker embeddings and the train flow use it."""
    a = np.asarray(audio, dtype=np.float32)
    if sr == target:
        return a
    import librosa

    return librosa.resample(a, orig_sr=sr, target_sr=target, res_type="soxr_hq").astype(np.float32)


def load(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode any common audio file to mono float32 at ``sample_rate``.

    soundfile first (wav/flac/ogg/mp3), ffmpeg for the rest (m4a, aac, opus in mp4, ...).
    Raises AudioError(reason) with reason in: missing, empty, corrupt, zero_length, non_finite.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError("missing", f"{p} does not exist")
    if p.stat().st_size == 0:
        raise AudioError("empty", f"{p.name} is a 0-byte file")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        audio = resample(audio, sr, sample_rate)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        audio = _ffmpeg_decode(p, sample_rate)
    if audio.size == 0:
        raise AudioError("zero_length", f"{p.name} decodes to 0 samples")
    if not np.isfinite(audio).all():
        raise AudioError("non_finite", f"{p.name} contains NaN/Inf samples")
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def probe_duration(path: str | Path) -> float | None:
    """Duration in seconds from the file header (soundfile, else ffprobe), without decoding; None
    when it cannot be known (the file is then handled whole, and ingest reports what is wrong)."""
    p = Path(path)
    try:
        info = sf.info(str(p))
        if info.samplerate > 0 and info.frames > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        pass
    if shutil.which("ffprobe") is None:
        return None
    try:
        proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(p)],
                              capture_output=True, timeout=60, text=True)
        return float(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    except (ValueError, subprocess.SubprocessError, OSError):
        return None


def load_window(path: str | Path, start_s: float, end_s: float, sample_rate: int = 16000) -> np.ndarray:
    """Decode only ``[start_s, end_s)`` of a file, mono float32 at ``sample_rate``: memory is that of
    the window, not of the file. soundfile seeks (wav/flac/ogg/mp3); other formats are streamed through
    ``ffmpeg -ss``. Resampling gets 0.5 s of context on each side (trimmed) so the window edges match a
    whole-file decode. Raises AudioError like ``load``."""
    p = Path(path)
    if not p.is_file():
        raise AudioError("missing", f"{p} does not exist")
    start_s, end_s = max(0.0, start_s), max(start_s, end_s)
    n_out = int(round((end_s - start_s) * sample_rate))
    try:
        with sf.SoundFile(str(p)) as f:
            sr = f.samplerate
            ctx = 0 if sr == sample_rate else int(0.5 * sr)
            a = max(0, int(round(start_s * sr)) - ctx)
            f.seek(a)
            data = f.read(int(round((end_s - start_s) * sr)) + int(round(start_s * sr)) - a + ctx, dtype="float32", always_2d=True)
        audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        audio = resample(audio, sr, sample_rate)
        skip = int(round((start_s * sr - a) * sample_rate / sr))
        audio = audio[skip: skip + n_out]
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        if shutil.which("ffmpeg") is None:
            raise AudioError("unreadable", f"{p.name}: soundfile cannot read it and ffmpeg is not installed")
        proc = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{start_s:.6f}", "-t", f"{end_s - start_s:.6f}", "-i", str(p),
             "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"], capture_output=True, timeout=600)
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        if proc.returncode != 0 or msg:
            raise AudioError("corrupt", f"ffmpeg cannot decode {p.name} [{start_s:.1f}-{end_s:.1f} s]: {msg[-1] if msg else proc.returncode}")
        audio = np.frombuffer(proc.stdout, dtype=np.float32)[:n_out].copy()
    if not np.isfinite(audio).all():
        raise AudioError("non_finite", f"{p.name} contains NaN/Inf samples in [{start_s:.1f}-{end_s:.1f} s]")
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False)


def rms_dbfs(audio: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def encode_flac(audio: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_bytes(data: bytes) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0], sr
