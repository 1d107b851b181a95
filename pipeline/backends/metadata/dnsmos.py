"""DNSMOS backend ``speechmos`` (embedded, opt-in with ``dnsmos: true``): speechmos 0.0.1.1 (``--no-deps``),
Microsoft DNSMOS P.835 ONNX (SIG, BAK, OVRL) on 9.01 s windows every 1 s (clips under 9.01 s are tiled,
as in the reference code); all windows of all clips of a batch go through onnxruntime in ``dnsmos_batch``
sized runs. Same numbers as ``speechmos.dnsmos.run`` (tested), ~2x realtime per core, so off by default.
"""
from __future__ import annotations

import os

import numpy as np

from pipeline.backends.metadata.base import dist_version


class DNSMOS:
    SR = 16000
    INPUT_LENGTH = 9.01
    # speechmos' non-personalised P.835 polynomial fits (raw -> MOS)
    P_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
    P_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
    P_OVR = np.poly1d([-0.06766283, 1.11546468, 0.04602535])

    name = "dnsmos"
    keys = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_source")
    columns = None
    uses_torch = False

    def __init__(self, batch_size: int = 16, threads: int = 1, p808: bool = False):
        import onnxruntime as ort
        import speechmos

        d = os.path.join(os.path.dirname(os.path.abspath(speechmos.__file__)), "dnsmos_models")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(os.path.join(d, "sig_bak_ovr.onnx"), so, providers=["CPUExecutionProvider"])
        self.p808 = ort.InferenceSession(os.path.join(d, "model_v8.onnx"), so, providers=["CPUExecutionProvider"]) if p808 else None
        self.batch_size = batch_size
        self.source = f"dnsmos-p835-speechmos-{dist_version('speechmos')}"

    @classmethod
    def from_config(cls, cfg, **context) -> "DNSMOS":
        return cls(cfg.dnsmos_batch)

    def windows(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.clip(x, -1.0, 1.0)  # speechmos refuses samples outside [-1, 1]; resampling overshoot is clipped
        n = int(self.INPUT_LENGTH * self.SR)
        if x.size == 0 or not np.any(x):
            raise ValueError("silent (all-zero) audio")
        while len(x) < n:
            x = np.append(x, x)
        hops = int(np.floor(len(x) / self.SR) - self.INPUT_LENGTH) + 1
        out = []
        for k in range(hops):
            seg = x[int(k * self.SR): int((k + self.INPUT_LENGTH) * self.SR)]
            if len(seg) >= n:
                out.append(seg.astype(np.float32))
        if not out:
            raise ValueError("no full DNSMOS window")
        return out

    @staticmethod
    def _melspec(seg: np.ndarray) -> np.ndarray:
        import librosa

        m = librosa.feature.melspectrogram(y=seg, sr=16000, n_fft=321, hop_length=160, n_mels=120)
        return ((librosa.power_to_db(m, ref=np.max) + 40) / 40).T

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        res: list = [None] * len(audios)
        segs, owner = [], []
        for i, x in enumerate(audios):
            try:
                if sr != self.SR:
                    raise ValueError(f"DNSMOS needs {self.SR} Hz, got {sr}")
                w = self.windows(np.asarray(x, np.float32))
                segs += w
                owner += [i] * len(w)
            except Exception as e:  # noqa: BLE001
                res[i] = e
        if not segs:
            return res
        raw = np.concatenate([self.sess.run(None, {"input_1": np.stack(segs[k: k + self.batch_size])})[0]
                              for k in range(0, len(segs), self.batch_size)])
        p808 = None
        if self.p808 is not None:
            p808 = np.concatenate([self.p808.run(None, {"input_1": np.stack([self._melspec(s[:-160]) for s in segs[k: k + self.batch_size]]).astype(np.float32)})[0][:, 0]
                                   for k in range(0, len(segs), self.batch_size)])
        sig, bak, ovr = self.P_SIG(raw[:, 0]), self.P_BAK(raw[:, 1]), self.P_OVR(raw[:, 2])
        owner_a = np.asarray(owner)
        for i in sorted(set(owner)):
            m = owner_a == i
            d = {"dnsmos_sig": float(sig[m].mean()), "dnsmos_bak": float(bak[m].mean()),
                 "dnsmos_ovrl": float(ovr[m].mean()), "dnsmos_source": self.source}
            if p808 is not None:
                d["dnsmos_p808"] = float(p808[m].mean())
            res[i] = d
        return res
