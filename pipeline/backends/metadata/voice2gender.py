"""Gender backend ``voice2gender`` (embedded default, CPU): XGBoost on 20 seewave-style acoustic features;
label ``male``/``female``, score = probability of that label. Features per clip, one booster call per batch.
"""
from __future__ import annotations

import warnings

import numpy as np

from pipeline.backends.metadata.base import dist_version


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class Voice2Gender:
    name = "gender"
    keys = ("gender", "gender_score", "gender_source")
    columns = None
    uses_torch = False

    def __init__(self):
        import voice2gender  # loads the bundled XGBoost booster (module level) once

        self._v2g = voice2gender
        self.source = f"voice2gender-{dist_version('voice2gender')}"
        self._features = None
        try:  # batched path: voice2gender's own feature extractor + one booster call per batch
            from voice2gender._model import FEATURE_NAMES, booster
            from voice2gender._preprocess import extract_features_from_pcm_sequence

            self._features = extract_features_from_pcm_sequence
            self.feature_names = list(FEATURE_NAMES)
            # a private single-threaded copy: xgboost's default thread pool costs ~50 ms per call on
            # a busy 2-core box (and one worker per core is the deployment model)
            self.booster = booster.copy()
            self.booster.set_param({"nthread": 1})
        except (ImportError, AttributeError):  # internals moved: fall back to voice2gender.predict per row
            self._features = None

    @classmethod
    def from_config(cls, cfg, **context) -> "Voice2Gender":
        return cls()

    def label(self, p_female: float) -> dict:
        if not np.isfinite(p_female):
            raise ValueError("non-finite probability")
        label = "female" if p_female >= 0.5 else "male"
        return {"gender": label, "gender_score": p_female if label == "female" else 1.0 - p_female,
                "gender_source": self.source}

    def features(self, x: np.ndarray, sr: int) -> np.ndarray:
        """voice2gender's 20 features (its ValueErrors: too short < 2048 samples, silent, no F0)."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            f = self._features([pcm16(x)], sample_rate=int(sr))
        v = np.asarray([f[n] for n in self.feature_names], dtype=np.float32)
        if not np.isfinite(v).all():
            raise ValueError("Model features contain NaN or infinite values")
        return v

    def predict(self, x: np.ndarray, sr: int) -> dict:
        """Unbatched path (public voice2gender.predict)."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            r = self._v2g.predict([pcm16(x)], sample_rate=int(sr))
        return self.label(float(r["female_probability"]))

    def _try(self, fn, *args) -> dict | Exception:
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - per clip
            return e

    def predict_batch(self, audios: list[np.ndarray], sample_rate: int) -> list[dict | Exception]:
        if self._features is None:
            return [self._try(self.predict, x, sample_rate) for x in audios]
        res: list = [self._try(self.features, x, sample_rate) for x in audios]
        feats = [(i, f) for i, f in enumerate(res) if not isinstance(f, Exception)]
        if not feats:
            return res
        try:
            import xgboost

            m = xgboost.DMatrix(np.stack([f for _, f in feats]), feature_names=self.feature_names, nthread=1)
            p_female = self.booster.predict(m)  # the model's output is P(female)
        except Exception as e:  # noqa: BLE001 - reported on every clip that had features
            for i, _ in feats:
                res[i] = e
            return res
        for (i, _), p in zip(feats, p_female):
            res[i] = self._try(self.label, float(p))
        return res
