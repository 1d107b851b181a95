"""Speakers backends on pyannote.audio (production; hub weights, gated: set HF_TOKEN).

``pyannote-segmentation`` (e.g. ``pyannote/segmentation-3.0``): the powerset segmentation model run on 10 s
chunks of every clip of the batch in one padded batch; per frame the active speakers. ``overlap_ratio`` =
frames with >= 2 active speakers / frames with >= 1; ``n_speakers`` = the most speakers active in one chunk
(the model's local speakers are not linked across chunks, so for clips over 10 s this is a lower bound).

``pyannote-diarization`` (e.g. ``pyannote/speaker-diarization-community-1``): the full pyannote pipeline
(segmentation + embeddings + clustering, batched inside the pipeline), one clip per call: speakers and
overlap from its annotation.
"""
from __future__ import annotations

import numpy as np

from pipeline.backends.metadata.base import dist_version


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

    name = "speakers"
    keys = ("n_speakers", "overlap_ratio", "n_speakers_source")
    columns = None
    uses_torch = True

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
        self.source = f"pyannote.audio-{dist_version('pyannote.audio')}:{name}:segmentation"

    @classmethod
    def from_config(cls, cfg, **context) -> "PyannoteSegmentationSpeakers":
        return cls(cfg.speakers_model or "pyannote/segmentation-3.0", cfg.device, cfg.model_batch_size)

    def _chunks(self, x: np.ndarray) -> list[np.ndarray]:
        n = max(1, int(np.ceil(len(x) / self.chunk)))
        out = []
        for k in range(n):
            c = x[k * self.chunk: (k + 1) * self.chunk]
            out.append((c, len(c)))
        return out

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
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

    name = "speakers"
    keys = ("n_speakers", "overlap_ratio", "n_speakers_source")
    columns = None
    uses_torch = True

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
        self.source = f"pyannote.audio-{dist_version('pyannote.audio')}:{name}"

    @classmethod
    def from_config(cls, cfg, **context) -> "PyannoteDiarizationSpeakers":
        return cls(cfg.speakers_model or "pyannote/speaker-diarization-community-1", cfg.device)

    @staticmethod
    def annotation_stats(ann) -> dict:
        speakers = ann.labels()
        speech = ann.get_timeline().support().duration()
        overlap = ann.get_overlap().duration() if len(speakers) > 1 else 0.0
        return {"n_speakers": len(speakers), "overlap_ratio": float(overlap / speech) if speech > 0 else 0.0}

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        res: list[dict | Exception] = []
        for x in audios:
            try:
                out = self.pipeline({"waveform": self.torch.from_numpy(np.asarray(x, np.float32))[None], "sample_rate": sr})
                ann = getattr(out, "speaker_diarization", out)  # pyannote 4: DiarizeOutput; 3: Annotation
                res.append({**self.annotation_stats(ann), "n_speakers_source": self.source})
            except Exception as e:  # noqa: BLE001
                res.append(e)
        return res
