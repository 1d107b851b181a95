"""Number of speakers (and overlap) per utterance.

Backends (``metadata.speakers_backend``), each with ``count_batch(audios, sr) -> list[dict | Exception]``
returning ``n_speakers``, ``overlap_ratio`` and ``n_speakers_source``:

``resemblyzer`` (embedded default, CPU, weights in the Resemblyzer wheel)
    GE2E speaker embeddings (Wan et al. 2018; Resemblyzer 0.1.4) of 1.6 s windows every 0.5 s
    over the speech of the clip (Resemblyzer's webrtcvad trimming of pauses), clustered by
    average-linkage agglomerative clustering on cosine similarity, cut at ``speakers_threshold``
    (0.70). A cluster counts as a speaker when it holds >= 2 windows and >= ``speakers_min_share``
    (20 %) of them; mixed windows at speaker changes form small clusters that are dropped. So
    speakers with less than ~2 s of speech, or under 20 % of the clip, are not counted, and clips
    under 1.6 s of speech are 1 speaker by construction. All windows of all clips of a batch go
    through the encoder together (one LSTM forward per ``speakers_batch_windows`` windows).
    Overlap cannot be measured with one embedding per window: ``overlap_ratio`` stays null.
    Source: ``resemblyzer-ge2e-0.1.4:ahc@0.70``.

``pyannote-segmentation`` (production, needs hub weights, e.g. ``pyannote/segmentation-3.0``)
    The powerset segmentation model run on 10 s chunks of every clip of the batch in one padded
    batch; per frame the active speakers. ``overlap_ratio`` = frames with >= 2 active speakers /
    frames with >= 1; ``n_speakers`` = the most speakers active in one chunk (the model's local
    speakers are not linked across chunks, so for clips over 10 s this is a lower bound).

``pyannote-diarization`` (production, e.g. ``pyannote/speaker-diarization-community-1``)
    The full pyannote pipeline (segmentation + embeddings + clustering, batched inside the
    pipeline), one clip per call: speakers and overlap from its annotation.
"""
from __future__ import annotations

import importlib.metadata as _md

import numpy as np

RESEMBLYZER_SR = 16000


def _version(dist: str) -> str:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "unknown"


def cluster_count(emb: np.ndarray, threshold: float, min_share: float, min_windows: int) -> tuple[int, np.ndarray]:
    """(speakers, labels) for L2-normalised window embeddings: average-linkage AHC on cosine
    distance cut at 1 - threshold; clusters with < min_windows windows or < min_share of all
    windows are not speakers."""
    n = len(emb)
    if n < 2:
        return 1, np.ones(n, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    lab = fcluster(linkage(emb.astype(np.float64), "average", metric="cosine"), t=1.0 - threshold,
                   criterion="distance")
    sizes = np.bincount(lab)
    keep = [c for c in range(1, len(sizes)) if sizes[c] >= min_windows and sizes[c] >= min_share * n]
    return max(1, len(keep)), lab


class ResemblyzerSpeakers:
    RATE = 2.0  # windows per second (hop 0.5 s)
    MIN_COVERAGE = 0.75

    def __init__(self, threshold: float = 0.70, min_share: float = 0.20, min_windows: int = 2,
                 batch_windows: int = 256, device: str = "cpu"):
        import torch
        from resemblyzer import VoiceEncoder

        self.torch = torch
        self.encoder = VoiceEncoder(device, verbose=False)
        self.encoder.eval()
        self.threshold, self.min_share, self.min_windows = threshold, min_share, min_windows
        self.batch_windows = batch_windows
        self.source = f"resemblyzer-ge2e-{_version('Resemblyzer')}:ahc@{threshold:.2f}"

    def _windows(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Mel windows (n, 160, 40) over the speech of one clip (Resemblyzer's own preprocessing)."""
        from resemblyzer import audio as ra
        from resemblyzer.hparams import audio_norm_target_dBFS

        if sr != RESEMBLYZER_SR:
            import librosa

            x = librosa.resample(x, orig_sr=sr, target_sr=RESEMBLYZER_SR)
        x = np.clip(x.astype(np.float32), -1.0, 1.0)
        if not np.any(x):
            raise ValueError("silent (all-zero) audio")
        x = ra.normalize_volume(x, audio_norm_target_dBFS, increase_only=True)
        x = np.clip(x, -1.0, 1.0)
        w = ra.trim_long_silences(x)
        if w.size < 0.3 * RESEMBLYZER_SR:
            raise ValueError(f"too little speech for speaker embeddings ({w.size / RESEMBLYZER_SR:.2f} s after VAD)")
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(w), self.RATE, self.MIN_COVERAGE)
        if wav_slices[-1].stop > len(w):
            w = np.pad(w, (0, wav_slices[-1].stop - len(w)))
        mel = ra.wav_to_mel_spectrogram(w)
        return np.stack([mel[s] for s in mel_slices])

    def embed(self, mels: np.ndarray) -> np.ndarray:
        out = []
        with self.torch.inference_mode():
            for i in range(0, len(mels), self.batch_windows):
                out.append(self.encoder(self.torch.from_numpy(mels[i: i + self.batch_windows])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 256), np.float32)

    def count_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        res: list[dict | Exception] = [None] * len(audios)  # type: ignore[list-item]
        wins, owner = [], []
        for i, x in enumerate(audios):
            try:
                m = self._windows(x, sr)
                wins.append(m)
                owner += [i] * len(m)
            except Exception as e:  # noqa: BLE001
                res[i] = e
        if wins:
            emb = self.embed(np.concatenate(wins))
            owner_a = np.asarray(owner)
            for i in sorted(set(owner)):
                n, _ = cluster_count(emb[owner_a == i], self.threshold, self.min_share, self.min_windows)
                res[i] = {"n_speakers": int(n), "overlap_ratio": None, "n_speakers_source": self.source}
        return res


# --------------------------------------------------------------------------------------------------
# pyannote (production; hub weights)
# --------------------------------------------------------------------------------------------------
def _hf_token(token: str | None) -> str | None:
    import os

    return token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGINGFACE_TOKEN")


def _from_pretrained(cls, name: str, token: str | None):
    """pyannote ``Model`` / ``Pipeline`` by hub name or local path (None from pyannote means gated or missing)."""
    obj = cls.from_pretrained(name, token=_hf_token(token))
    if obj is None:
        raise RuntimeError(f"could not load {name} (gated model: set HF_TOKEN)")
    return obj


class PyannoteSegmentationSpeakers:
    """Batched powerset segmentation (pyannote/segmentation-3.0 style) over all clips of a batch."""

    def __init__(self, model: str | object = "pyannote/segmentation-3.0", device: str = "cpu", batch_size: int = 32,
                 token: str | None = None):
        import torch

        self.torch = torch
        if isinstance(model, str):
            from pyannote.audio import Model

            name, model = model, _from_pretrained(Model, model, token)
        else:
            name = getattr(model, "name", None) or type(model).__name__
        self.model = model.to(torch.device(device)).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        specs = self.model.specifications
        specs = specs[0] if isinstance(specs, tuple) else specs
        self.sr = int(self.model.hparams.sample_rate) if "sample_rate" in self.model.hparams else 16000
        self.chunk = int(round(specs.duration * self.sr))
        if specs.powerset:
            from pyannote.audio.utils.powerset import Powerset

            self.powerset = Powerset(len(specs.classes), specs.powerset_max_classes).to(self.device)
        else:
            self.powerset = None
        self.source = f"pyannote.audio-{_version('pyannote.audio')}:{name}:segmentation"

    def _chunks(self, x: np.ndarray) -> list[np.ndarray]:
        n = max(1, int(np.ceil(len(x) / self.chunk)))
        out = []
        for k in range(n):
            c = x[k * self.chunk: (k + 1) * self.chunk]
            out.append((c, len(c)))
        return out

    def count_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        res: list[dict | Exception] = [None] * len(audios)  # type: ignore[list-item]
        items = []  # (row, chunk audio, valid samples)
        for i, x in enumerate(audios):
            if sr != self.sr:
                res[i] = ValueError(f"segmentation model expects {self.sr} Hz, got {sr}")
                continue
            if not np.any(x):
                res[i] = ValueError("silent (all-zero) audio")
                continue
            items += [(i, c, n) for c, n in self._chunks(np.asarray(x, np.float32))]
        active: dict[int, list[np.ndarray]] = {}
        torch = self.torch
        for b in range(0, len(items), self.batch_size):
            part = items[b: b + self.batch_size]
            wav = np.zeros((len(part), 1, self.chunk), np.float32)
            for j, (_, c, n) in enumerate(part):
                wav[j, 0, :n] = c
            with torch.inference_mode():
                out = self.model(torch.from_numpy(wav).to(self.device))
                act = self.powerset.to_multilabel(out) if self.powerset is not None else (out > 0.5).float()
            act = act.cpu().numpy() > 0.5  # (chunks, frames, local speakers)
            frames = act.shape[1]
            for j, (i, _, n) in enumerate(part):
                valid = int(np.ceil(frames * n / self.chunk))
                active.setdefault(i, []).append(act[j, :valid])
        for i, chunks in active.items():
            n_spk = max(int(np.sum(c.any(axis=0))) for c in chunks)
            k = np.concatenate([c.sum(axis=1) for c in chunks])
            speech = int(np.sum(k >= 1))
            res[i] = {"n_speakers": n_spk, "overlap_ratio": float(np.sum(k >= 2) / speech) if speech else 0.0,
                      "n_speakers_source": self.source}
        return res


class PyannoteDiarizationSpeakers:
    """The pyannote diarization pipeline, one clip per call (the pipeline batches internally)."""

    def __init__(self, pipeline: str | object = "pyannote/speaker-diarization-community-1", device: str = "cpu",
                 token: str | None = None):
        import torch

        self.torch = torch
        if isinstance(pipeline, str):
            from pyannote.audio import Pipeline

            name, pipeline = pipeline, _from_pretrained(Pipeline, pipeline, token)
            pipeline.to(torch.device(device))
        else:
            name = type(pipeline).__name__
        self.pipeline = pipeline
        self.source = f"pyannote.audio-{_version('pyannote.audio')}:{name}"

    @staticmethod
    def annotation_stats(ann) -> dict:
        speakers = ann.labels()
        speech = ann.get_timeline().support().duration()
        overlap = ann.get_overlap().duration() if len(speakers) > 1 else 0.0
        return {"n_speakers": len(speakers), "overlap_ratio": float(overlap / speech) if speech > 0 else 0.0}

    def count_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        res: list[dict | Exception] = []
        for x in audios:
            try:
                out = self.pipeline({"waveform": self.torch.from_numpy(np.asarray(x, np.float32))[None], "sample_rate": sr})
                ann = getattr(out, "speaker_diarization", out)  # pyannote 4: DiarizeOutput; 3: Annotation
                res.append({**self.annotation_stats(ann), "n_speakers_source": self.source})
            except Exception as e:  # noqa: BLE001
                res.append(e)
        return res


def load_speakers(cfg):
    b = cfg.speakers_backend
    if b == "resemblyzer":
        return ResemblyzerSpeakers(cfg.speakers_threshold, cfg.speakers_min_share, 2, cfg.speakers_batch_windows, cfg.device)
    if b == "pyannote-segmentation":
        return PyannoteSegmentationSpeakers(cfg.speakers_model or "pyannote/segmentation-3.0", cfg.device, cfg.model_batch_size)
    if b == "pyannote-diarization":
        return PyannoteDiarizationSpeakers(cfg.speakers_model or "pyannote/speaker-diarization-community-1", cfg.device)
    if b == "none":
        return None
    raise ValueError(f"unknown speakers backend {b!r}")
