"""Model-backed metadata estimators: DNSMOS (embedded, opt-in) and the production backends.

Every class loads its model once (the runner keeps one MetadataEstimator per worker process) and
takes a whole batch of clips: ``predict_batch(audios, sr) -> list[dict | Exception]`` (one entry per
clip, an Exception for a clip that could not be scored). Heavy imports happen in ``__init__`` only.

=====================  =============================================================================
DNSMOS                 speechmos 0.0.1.1 (``--no-deps``): Microsoft DNSMOS P.835 ONNX (SIG, BAK, OVRL)
(embedded, opt-in)     on 9.01 s windows every 1 s (clips under 9.01 s are tiled, as in the
                       reference code); all windows of all clips of a batch go through
                       onnxruntime in ``dnsmos_batch`` sized runs. Same numbers as
                       ``speechmos.dnsmos.run`` (tested), ~2x realtime per core, so off by default.
speechbrain            ``EncoderClassifier`` (CommonAccent ECAPA ``Jzuluaga/accent-id-commonaccent_ecapa``,
classifiers            VoxLingua107 ECAPA ``speechbrain/lang-id-voxlingua107-ecapa``) or a
(production)           ``foreign_class`` interface (``speechbrain/emotion-recognition-wav2vec2-IEMOCAP``,
                       ``custom_interface.py`` / ``CustomEncoderWav2vec2Classifier``):
                       ``classify_batch`` on length-sorted, zero-padded batches with relative lengths.
audeering age/gender   ``audeering/wav2vec2-large-robust-24-ft-age-gender`` (the model card's
(production)           ``AgeGenderModel``: wav2vec2 + age and gender heads), padded batches with an
                       attention mask and masked mean pooling; age in years, gender female/male/child.
brouhaha (production)  ``pyannote/brouhaha`` (needs the ``brouhaha`` package from its GitHub repo, not on
                       PyPI): per-frame speech activity, SNR and C50; clip value = mean over speech frames.
=====================  =============================================================================
"""
from __future__ import annotations

import importlib.metadata as _md
import os

import numpy as np


def _version(dist: str) -> str:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "unknown"


def _length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[k: k + batch_size] for k in range(0, len(order), batch_size)]


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# DNSMOS (speechmos)
# --------------------------------------------------------------------------------------------------
class DNSMOS:
    SR = 16000
    INPUT_LENGTH = 9.01
    # speechmos' non-personalised P.835 polynomial fits (raw -> MOS)
    P_SIG = np.poly1d([-0.08397278, 1.22083953, 0.0052439])
    P_BAK = np.poly1d([-0.13166888, 1.60915514, -0.39604546])
    P_OVR = np.poly1d([-0.06766283, 1.11546468, 0.04602535])

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
        self.source = f"dnsmos-p835-speechmos-{_version('speechmos')}"

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


# --------------------------------------------------------------------------------------------------
# speechbrain classifiers (emotion / accent / language ID)
# --------------------------------------------------------------------------------------------------
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

    def __init__(self, model: str | object, kind: str, device: str = "cpu", batch_size: int = 16,
                 interface: tuple[str, str] | None = None, savedir: str | None = None):
        import torch

        self.torch = torch
        self.kind = kind
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
        self.source = f"speechbrain-{_version('speechbrain')}:{name}"

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
        for batch in _length_batches([len(audios[i]) for i in ok], self.batch_size):
            idx = [ok[j] for j in batch]
            n = max(len(audios[i]) for i in idx)
            wavs = np.zeros((len(idx), n), np.float32)
            for r, i in enumerate(idx):
                wavs[r, : len(audios[i])] = audios[i]
            lens = torch.tensor([len(audios[i]) / n for i in idx], dtype=torch.float32)
            with torch.inference_mode():
                out_prob, _, index, text_lab = self.model.classify_batch(torch.from_numpy(wavs).to(self.device), lens.to(self.device))
            p = _softmax(out_prob.detach().float().cpu().numpy().reshape(len(idx), -1))
            index = index.detach().cpu().numpy().reshape(-1)
            for r, i in enumerate(idx):
                lab = text_lab[r] if isinstance(text_lab, (list, tuple)) else str(text_lab)
                res[i] = {"label": self._label(lab), "score": float(p[r, int(index[r])]), "source": self.source}
        return res


# --------------------------------------------------------------------------------------------------
# audeering wav2vec2 age / gender
# --------------------------------------------------------------------------------------------------
AGE_GENDER_LABELS = ("female", "male", "child")


def age_gender_model_class():
    """The model card's AgeGenderModel (wav2vec2 + two heads), defined lazily (transformers import)."""
    import torch
    from torch import nn
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class ModelHead(nn.Module):
        def __init__(self, config, num_labels):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, num_labels)

        def forward(self, features):
            x = self.dropout(features)
            x = torch.tanh(self.dense(x))
            return self.out_proj(self.dropout(x))

    class AgeGenderModel(Wav2Vec2PreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.config = config
            self.wav2vec2 = Wav2Vec2Model(config)
            self.age = ModelHead(config, 1)
            self.gender = ModelHead(config, 3)
            self.post_init()

        def forward(self, input_values, attention_mask=None):
            hidden = self.wav2vec2(input_values, attention_mask=attention_mask)[0]
            if attention_mask is None:
                pooled = hidden.mean(dim=1)
            else:  # masked mean over the real frames of each clip
                m = self.wav2vec2._get_feature_vector_attention_mask(hidden.shape[1], attention_mask).to(hidden.dtype)
                pooled = (hidden * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
            return pooled, self.age(pooled), torch.softmax(self.gender(pooled), dim=1)

    return AgeGenderModel


class AudeeringAgeGender:
    def __init__(self, model: str = "audeering/wav2vec2-large-robust-24-ft-age-gender", device: str = "cpu",
                 batch_size: int = 8):
        import torch
        from transformers import Wav2Vec2FeatureExtractor

        self.torch = torch
        self.device = torch.device(device)
        self.fe = Wav2Vec2FeatureExtractor.from_pretrained(model)
        self.model = age_gender_model_class().from_pretrained(model).to(self.device).eval()
        self.batch_size = batch_size
        self.source = f"{model.rstrip('/').split('/')[-1] if os.path.isdir(model) else model}"

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        torch = self.torch
        res: list = [None] * len(audios)
        ok = [i for i, x in enumerate(audios) if len(x) >= 400]
        for i in set(range(len(audios))) - set(ok):
            res[i] = ValueError("too short for wav2vec2 (< 400 samples)")
        if sr != self.fe.sampling_rate:
            return [ValueError(f"model expects {self.fe.sampling_rate} Hz, got {sr}")] * len(audios)
        for batch in _length_batches([len(audios[i]) for i in ok], self.batch_size):
            idx = [ok[j] for j in batch]
            enc = self.fe([np.asarray(audios[i], np.float32) for i in idx], sampling_rate=sr, padding=True,
                          return_attention_mask=True, return_tensors="pt")
            with torch.inference_mode():
                _, age, gender = self.model(enc["input_values"].to(self.device), enc["attention_mask"].to(self.device))
            age = age.float().cpu().numpy()[:, 0]
            gender = gender.float().cpu().numpy()
            for r, i in enumerate(idx):
                k = int(np.argmax(gender[r]))
                res[i] = {"age_years": float(np.clip(age[r], 0.0, 1.0) * 100.0), "gender": AGE_GENDER_LABELS[k],
                          "gender_score": float(gender[r, k]), "source": f"audeering:{self.source}"}
        return res


# --------------------------------------------------------------------------------------------------
# brouhaha (SNR + C50), production only
# --------------------------------------------------------------------------------------------------
class Brouhaha:
    """``pyannote/brouhaha``: a pyannote model with three outputs per frame (speech activity, SNR dB,
    C50 dB). Needs ``pip install git+https://github.com/marianne-m/brouhaha-vad`` (not on PyPI) so
    that the checkpoint's model class imports; untested here (no weights, no package)."""

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
