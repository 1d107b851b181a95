"""SNR (and C50) backend ``brouhaha`` (production only): ``pyannote/brouhaha`` (needs the ``brouhaha``
package from its GitHub repo, not on PyPI): per-frame speech activity, SNR and C50; clip value = mean
over speech frames. Also fills ``c50_db``.
"""
from __future__ import annotations

import os

import numpy as np

class Brouhaha:
    """``pyannote/brouhaha``: a pyannote model with three outputs per frame (speech activity, SNR dB,
    C50 dB). Needs ``pip install git+https://github.com/marianne-m/brouhaha-vad`` (not on PyPI) so
    that the checkpoint's model class imports; untested here (no weights, no package)."""

    name = "snr"
    keys = ("snr_db", "snr_source", "c50_db", "c50_source")
    columns = {"snr_db": "snr_db", "snr_source": "source", "c50_db": "c50_db", "c50_source": "source"}
    uses_torch = True

    def __init__(self, model: str | object = "pyannote/brouhaha", device: str = "cpu", batch_size: int = 32,
                 token: str | None = None):
        import torch

        self.torch = torch
        if isinstance(model, str):
            from pyannote.audio import Model

            name = model
            model = Model.from_pretrained(model, token=token or os.environ.get("HF_TOKEN"))
            if model is None:
                raise RuntimeError(f"could not load {name}")
        else:
            name = type(model).__name__
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        specs = self.model.specifications
        specs = specs[0] if isinstance(specs, tuple) else specs
        self.sr = 16000
        self.chunk = int(round(specs.duration * self.sr))
        self.batch_size = batch_size
        self.source = f"brouhaha:{name}"

    @classmethod
    def from_config(cls, cfg, **context) -> "Brouhaha":
        return cls(cfg.brouhaha_model, cfg.device, cfg.model_batch_size)

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        torch = self.torch
        res: list = [None] * len(audios)
        items = []
        for i, x in enumerate(audios):
            if sr != self.sr:
                res[i] = ValueError(f"brouhaha expects {self.sr} Hz, got {sr}")
                continue
            for k in range(max(1, int(np.ceil(len(x) / self.chunk)))):
                c = np.asarray(x[k * self.chunk: (k + 1) * self.chunk], np.float32)
                items.append((i, c))
        frames: dict[int, list[np.ndarray]] = {}
        for b in range(0, len(items), self.batch_size):
            part = items[b: b + self.batch_size]
            wav = np.zeros((len(part), 1, self.chunk), np.float32)
            for j, (_, c) in enumerate(part):
                wav[j, 0, : len(c)] = c
            with torch.inference_mode():
                out = self.model(torch.from_numpy(wav).to(self.device)).float().cpu().numpy()  # (B, frames, 3)
            for j, (i, c) in enumerate(part):
                valid = int(np.ceil(out.shape[1] * len(c) / self.chunk))
                frames.setdefault(i, []).append(out[j, :valid])
        for i, fs in frames.items():
            f = np.concatenate(fs)
            speech = f[:, 0] > 0.5
            if not speech.any():
                res[i] = ValueError("no speech frames")
                continue
            res[i] = {"snr_db": float(f[speech, 1].mean()), "c50_db": float(f[speech, 2].mean()), "source": self.source}
        return res
