"""Gender (and age) backend ``audeering`` (production, hub weights):
``audeering/wav2vec2-large-robust-24-ft-age-gender`` (the model card's ``AgeGenderModel``: wav2vec2 + age
and gender heads), padded batches with an attention mask and masked mean pooling; age in years, gender
female/male/child. Also fills ``age_years``.
"""
from __future__ import annotations

import os

import numpy as np

from pipeline.backends.metadata.base import length_batches

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
    name = "gender"
    keys = ("gender", "gender_score", "gender_source", "age_years", "age_source")
    columns = {"gender": "gender", "gender_score": "gender_score", "gender_source": "source",
               "age_years": "age_years", "age_source": "source"}
    uses_torch = True

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

    @classmethod
    def from_config(cls, cfg, **context) -> "AudeeringAgeGender":
        return cls(cfg.gender_model, cfg.device, cfg.model_batch_size)

    def predict_batch(self, audios: list[np.ndarray], sr: int) -> list[dict | Exception]:
        torch = self.torch
        res: list = [None] * len(audios)
        ok = [i for i, x in enumerate(audios) if len(x) >= 400]
        for i in set(range(len(audios))) - set(ok):
            res[i] = ValueError("too short for wav2vec2 (< 400 samples)")
        if sr != self.fe.sampling_rate:
            return [ValueError(f"model expects {self.fe.sampling_rate} Hz, got {sr}")] * len(audios)
        for batch in length_batches([len(audios[i]) for i in ok], self.batch_size):
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
