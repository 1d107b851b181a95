"""Emotion / accent / language backend ``speechbrain`` (production, hub weights): one speechbrain
``Pretrained`` classifier, ``EncoderClassifier`` (CommonAccent ECAPA ``Jzuluaga/accent-id-commonaccent_ecapa``,
VoxLingua107 ECAPA ``speechbrain/lang-id-voxlingua107-ecapa``) or a ``foreign_class`` interface
(``speechbrain/emotion-recognition-wav2vec2-IEMOCAP``, ``custom_interface.py`` /
``CustomEncoderWav2vec2Classifier``): ``classify_batch`` on length-sorted, zero-padded batches with
relative lengths.
"""
from __future__ import annotations

import os

import numpy as np

from pipeline.backends.metadata.base import dist_version, length_batches, softmax

IEMOCAP_LABELS = {"neu": "neutral", "ang": "angry", "hap": "happy", "sad": "sad", "exc": "excited", "fru": "frustrated"}
EMOTION_INTERFACE = ("custom_interface.py", "CustomEncoderWav2vec2Classifier")


def ruamel_compat() -> None:
    """hyperpyyaml 1.2.2 (speechbrain's YAML loader) builds a legacy ``ruamel.yaml.Loader``, which in
    ruamel.yaml 0.19 lacks the ``max_depth`` attribute its composer reads (AttributeError in every
    ``from_hparams``); hyperpyyaml 1.2.3 fixes it by requiring ruamel.yaml < 0.19, which the pinned
    set (ruamel.yaml 0.19.1, for prefect) does not allow. Give the legacy loader the attribute."""
    try:
        import ruamel.yaml
    except ImportError:
        return
    for cls in (getattr(ruamel.yaml, "Loader", None), getattr(ruamel.yaml, "SafeLoader", None),
                getattr(ruamel.yaml, "RoundTripLoader", None)):
        if cls is not None and not hasattr(cls, "max_depth"):
            cls.max_depth = None


def _savedir(source: str) -> str:
    base = os.environ.get("SPEECHINSTRUCT_HOME", os.path.expanduser("~/.cache/speechinstruct"))
    return os.path.join(base, "hub", source.strip("/").replace("/", "--"))


class SpeechBrainClassifier:
    """One speechbrain ``Pretrained`` classifier with ``classify_batch(wavs, wav_lens)``.

    ``kind``: ``emotion`` (labels mapped to words: neu -> neutral ...), ``accent`` (labels as the
    model gives them), ``language`` (VoxLingua107 ``"en: English"`` -> ``en``). ``interface``:
    ``(pymodule_file, classname)`` for models that ship their own interface (``foreign_class``).
    ``model`` may also be a loaded speechbrain object (tests)."""

    uses_torch = True

    def __init__(self, model: str | object, kind: str, device: str = "cpu", batch_size: int = 16,
                 interface: tuple[str, str] | None = None, savedir: str | None = None):
        import torch

        self.torch = torch
        self.kind = kind
        self.name = kind
        self.keys = (kind, f"{kind}_score", f"{kind}_source")
        self.columns = {kind: "label", f"{kind}_score": "score", f"{kind}_source": "source"}
        if isinstance(model, str):
            ruamel_compat()
            name = model
            run_opts = {"device": device}
            if interface:
                from speechbrain.inference.interfaces import foreign_class

                model = foreign_class(source=name, pymodule_file=interface[0], classname=interface[1],
                                      savedir=savedir or _savedir(name), run_opts=run_opts)
            else:
                from speechbrain.inference.classifiers import EncoderClassifier

                model = EncoderClassifier.from_hparams(source=name, savedir=savedir or _savedir(name), run_opts=run_opts)
            if model is None:
                raise RuntimeError(f"could not load {name}")
        else:
            name = getattr(model, "source_name", None) or type(model).__name__
        self.model = model
        self.model.eval() if hasattr(self.model, "eval") else None
        self.device = device
        self.batch_size = batch_size
        self.sr = int(getattr(getattr(model, "audio_normalizer", None), "sample_rate", 16000))
        self.source = f"speechbrain-{dist_version('speechbrain')}:{name}"

    @classmethod
    def from_config(cls, cfg, *, kind: str, **context) -> "SpeechBrainClassifier":
        """``kind``: emotion, accent or language; the model is ``cfg.<kind>_model``."""
        return cls(getattr(cfg, f"{kind}_model"), kind, cfg.device, cfg.model_batch_size,
                   interface=EMOTION_INTERFACE if kind == "emotion" else None)

    def _label(self, lab: str) -> str:
        lab = str(lab)
        if self.kind == "emotion":
            return IEMOCAP_LABELS.get(lab, lab)
        if self.kind == "language":
            return lab.split(":")[0].strip()
        return lab

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        torch = self.torch
        res: list = [None] * len(audios)
        ok = []
        for i, x in enumerate(audios):
            if sr != self.sr:
                res[i] = ValueError(f"model expects {self.sr} Hz, got {sr}")
            elif len(x) < 0.1 * sr:
                res[i] = ValueError("too short (< 0.1 s)")
            else:
                ok.append(i)
        for batch in length_batches([len(audios[i]) for i in ok], self.batch_size):
            idx = [ok[j] for j in batch]
            n = max(len(audios[i]) for i in idx)
            wavs = np.zeros((len(idx), n), np.float32)
            for r, i in enumerate(idx):
                wavs[r, : len(audios[i])] = audios[i]
            lens = torch.tensor([len(audios[i]) / n for i in idx], dtype=torch.float32)
            with torch.inference_mode():
                out_prob, _, index, text_lab = self.model.classify_batch(torch.from_numpy(wavs).to(self.device), lens.to(self.device))
            p = softmax(out_prob.detach().float().cpu().numpy().reshape(len(idx), -1))
            index = index.detach().cpu().numpy().reshape(-1)
            for r, i in enumerate(idx):
                lab = text_lab[r] if isinstance(text_lab, (list, tuple)) else str(text_lab)
                res[i] = {"label": self._label(lab), "score": float(p[r, int(index[r])]), "source": self.source}
        return res
