"""Gender from several pieces of evidence, with a calibrated probability and abstention.

A gender classifier alone (voice2gender's XGBoost, or the audeering wav2vec2 model) is confidently wrong on some
voices: a rough / creaky female voice (espeak-ng ``f2``) reads "male" with p = 0.999. So the label is decided from

1. the classifier's P(female), its logit clipped to +-``gender_classifier_max_logit`` (no single model may be
   certain on its own), and
2. the speaker's F0 from a robust tracker (``pitch_median_hz`` of the pitch backend, Praat by default): the
   log-likelihood ratio of two log-normal F0 populations, male centred on ``gender_f0_male_hz`` and female on
   ``gender_f0_female_hz`` (widths ``gender_f0_octaves``), counted only with at least ``gender_min_voiced_frames``
   voiced frames (a whisper has no F0: the classifier decides alone, with its clipped confidence);

combined as ``logit P(female) = gender_w_classifier * clip(logit p_c) + gender_w_f0 * LLR_f0 + gender_bias``.
The weights are set by rule, not fitted (the hard known-truth set, tests/fixtures_metadata/hardset.py, is
separable, so a logistic regression on it only inflates them): the F0 term is a log-likelihood ratio (weight 1);
the classifier gets 0.5, so on its own (at most 0.5 x 3 = 1.5, P = 0.82) it never reaches ``gender_min_prob``
(0.85): voice2gender reads whispered speech as male with p = 0.99, so an answer needs F0 evidence that agrees
with it or outweighs it. bench/bench_metadata.py --only hard reports accuracy, abstention and calibration per
voice and SNR, and --fit prints the logistic-regression weights of its dev half for comparison.
Below ``gender_min_prob`` for the more likely label the row gets
``gender = None``: ``gender_score`` still holds that probability and ``gender_source`` says
``abstained: <reason>``; ``gender_evidence`` (JSON) holds every piece of evidence. A manifest label still wins
downstream (pipeline.core.rows.gender_of).
"""
from __future__ import annotations

import json
import math

import numpy as np


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1.0 - 1e-9)
    return math.log(p / (1.0 - p))


def f0_llr(f0_hz: float, male_hz: float, female_hz: float, octaves: float) -> float:
    """log N(log2 f; female) - log N(log2 f; male), equal widths (so no width term)."""
    x = math.log2(f0_hz)
    zf = (x - math.log2(female_hz)) / octaves
    zm = (x - math.log2(male_hz)) / octaves
    return 0.5 * (zm * zm - zf * zf)


def decide(p_classifier: float | None, f0_median_hz: float | None, voiced_frames: int | None, cfg) -> dict:
    """The fused decision for one clip: {gender, gender_score, p_female, reason, evidence}."""
    ev: dict = {}
    z = cfg.gender_bias
    if p_classifier is not None and math.isfinite(p_classifier):
        zc = max(-cfg.gender_classifier_max_logit, min(cfg.gender_classifier_max_logit, _logit(p_classifier)))
        ev["classifier_p_female"] = round(float(p_classifier), 4)
        z += cfg.gender_w_classifier * zc
    f0_ok = (f0_median_hz is not None and math.isfinite(f0_median_hz) and f0_median_hz > 0
             and (voiced_frames or 0) >= cfg.gender_min_voiced_frames)
    if f0_median_hz is not None:
        ev["f0_median_hz"] = round(float(f0_median_hz), 1)
        ev["f0_voiced_frames"] = int(voiced_frames or 0)
    if f0_ok:
        llr = f0_llr(f0_median_hz, cfg.gender_f0_male_hz, cfg.gender_f0_female_hz, cfg.gender_f0_octaves)
        llr = max(-cfg.gender_f0_max_llr, min(cfg.gender_f0_max_llr, llr))
        ev["f0_llr_female"] = round(llr, 3)
        z += cfg.gender_w_f0 * llr
    if "classifier_p_female" not in ev and not f0_ok:
        raise ValueError("no gender evidence: the classifier failed and there is no F0")
    p_female = 1.0 / (1.0 + math.exp(-z))
    label = "female" if p_female >= 0.5 else "male"
    score = p_female if label == "female" else 1.0 - p_female
    ev["p_female"] = round(p_female, 4)
    reason = None
    if score < cfg.gender_min_prob:
        if "classifier_p_female" in ev and f0_ok and (ev["classifier_p_female"] - 0.5) * ev["f0_llr_female"] < 0:
            reason = (f"conflict: classifier P(female) {ev['classifier_p_female']:.2f}, F0 {f0_median_hz:.0f} Hz; "
                      f"P({label}) {score:.2f} < {cfg.gender_min_prob}")
        elif not f0_ok:
            reason = f"no reliable F0 ({int(voiced_frames or 0)} voiced frames); P({label}) {score:.2f} < {cfg.gender_min_prob}"
        else:
            reason = f"P({label}) {score:.2f} < {cfg.gender_min_prob}"
    ev["decision"] = "abstained" if reason else label
    return {"gender": None if reason else label, "gender_score": float(score), "p_female": p_female,
            "reason": reason, "evidence": ev}


class GenderEvidence:
    """The configured gender classifier + F0 evidence -> (gender | None, gender_score, gender_source,
    gender_evidence). The metadata stage hands over the pitch backend's results of the same batch
    (:meth:`use_pitch`); without them the pitch backend runs here."""

    name = "gender"
    keys = ("gender", "gender_score", "gender_source", "gender_evidence")
    columns = None

    def __init__(self, classifier, pitch, cfg):
        self.classifier, self.pitch, self.cfg = classifier, pitch, cfg
        # the classifier's own columns (audeering: age too) + the evidence
        self.keys = tuple(dict.fromkeys([*classifier.keys, "gender_evidence"]))
        self.uses_torch = bool(getattr(classifier, "uses_torch", False))
        self._pitch_results: list | None = None
        self.source = f"evidence:{classifier.source if hasattr(classifier, 'source') else classifier.name}+f0:{pitch.source}"

    @classmethod
    def from_config(cls, cfg, **context) -> "GenderEvidence":
        from pipeline.backends.metadata import GENDER, PITCH

        classifier = GENDER.get(cfg.gender_backend).from_config(cfg, **context)
        pitch = PITCH.get(cfg.pitch_backend).from_config(cfg, **context)
        return cls(classifier, pitch, cfg)

    def use_pitch(self, results: list) -> None:
        """The pitch backend's per-clip results for the next :meth:`predict_batch` (same clips, same order)."""
        self._pitch_results = results

    def predict_batch(self, audios: list[np.ndarray], sample_rate: int) -> list[dict | Exception]:
        pitch, self._pitch_results = self._pitch_results, None
        if pitch is None or len(pitch) != len(audios):
            pitch = self.pitch.predict_batch(audios, sample_rate)
        cls = self.classifier.predict_batch(audios, sample_rate)
        out: list[dict | Exception] = []
        mapping = getattr(self.classifier, "columns", None)
        for c, p in zip(cls, pitch):
            if isinstance(c, Exception):  # no classifier, no answer (F0 alone is one piece of evidence)
                out.append(c)
                continue
            if mapping is not None:
                c = {k: c[src] for k, src in mapping.items()}
            p_f = None
            extra = {}
            if isinstance(c, dict) and c.get("gender") in ("male", "female") and c.get("gender_score") is not None:
                p_f = c["gender_score"] if c["gender"] == "female" else 1.0 - c["gender_score"]
                extra = {k: v for k, v in c.items() if k not in ("gender", "gender_score", "gender_source")}
            f0 = p.get("pitch_median_hz") if isinstance(p, dict) else None
            n = p.get("pitch_voiced_frames") if isinstance(p, dict) else 0
            try:
                d = decide(p_f, f0, n, self.cfg)
            except Exception as e:  # noqa: BLE001 - per clip: neither piece of evidence
                out.append(e)
                continue
            src = self.source if d["reason"] is None else f"{self.source}; abstained: {d['reason']}"
            out.append({"gender": d["gender"], "gender_score": d["gender_score"], "gender_source": src,
                        "gender_evidence": json.dumps(d["evidence"], sort_keys=True), **extra})
        return out
