"""Metadata estimator backends: one registry per attribute kind, selected by name in the profile's
``metadata`` section (``gender_backend``, ``pitch_backend``, ``snr_backend``, ``emotion_backend``,
``accent_backend``, ``language_backend``, ``speakers_backend``; ``dnsmos: true`` selects ``speechmos``).
Loudness and speech span have one backend each.

Names that are not registered estimators are handled where they always were: ``none`` (left null),
``emotion_backend: text-nrc`` (the NRC lexicon over the transcript, pipeline.backends.metadata.text, run
by the metadata stage and again from ``asr_text``) and ``language_backend: asr`` (``asr_language`` copied
by the ASR stage). Light on purpose: nothing heavy is imported until an estimator is loaded.
"""
from __future__ import annotations

from typing import Any

from pipeline.backends.metadata.base import Estimator
from pipeline.core.registry import Registry

_M = "pipeline.backends.metadata"
TORCH = {"torch": "torch"}

LOUDNESS: Registry[Estimator] = Registry("metadata.loudness", Estimator)
LOUDNESS.add("pyloudnorm", f"{_M}.loudness:Loudness", requires={"pyloudnorm": "pyloudnorm"},
             doc="BS.1770-4 integrated loudness")

SNR: Registry[Estimator] = Registry("metadata.snr", Estimator)
SNR.add("wada", f"{_M}.snr_wada:WadaSNR", requires={"scipy": "scipy"}, doc="blind WADA-SNR (embedded)")
SNR.add("brouhaha", f"{_M}.brouhaha:Brouhaha",
        requires={**TORCH, "pyannote.audio": "pyannote.audio",
                  "brouhaha": "brouhaha @ https://github.com/marianne-m/brouhaha-vad/archive/HEAD.zip"},
        doc="pyannote/brouhaha SNR + C50 (hub weights)")

PITCH: Registry[Estimator] = Registry("metadata.pitch", Estimator)
PITCH.add("praat", f"{_M}.pitch:PraatPitch", requires={"parselmouth": "praat-parselmouth"},
          doc="Praat autocorrelation + Viterbi (praat-parselmouth)")
PITCH.add("yin", f"{_M}.pitch:YinPitch", requires={"scipy": "scipy"}, doc="vectorised YIN (embedded)")
PITCH.add("pyin", f"{_M}.pitch:PyinPitch", requires={"librosa": "librosa"}, doc="librosa.pyin (~20x slower)")

SPAN: Registry[Estimator] = Registry("metadata.span", Estimator)
SPAN.add("energy", f"{_M}.speech_span:SpeechSpan", doc="first to last speech frame (energy gate)")

GENDER: Registry[Estimator] = Registry("metadata.gender", Estimator)
GENDER.add("voice2gender", f"{_M}.voice2gender:Voice2Gender", requires={"voice2gender": "voice2gender"},
           doc="XGBoost on acoustic features (embedded)")
GENDER.add("evidence", f"{_M}.gender_evidence:GenderEvidence",
           doc="the gender_backend classifier + robust F0, calibrated P(female), abstention (gender_fusion: true)")
GENDER.add("audeering", f"{_M}.audeering:AudeeringAgeGender", requires={**TORCH, "transformers": "transformers"},
           doc="wav2vec2 age + gender (hub weights)")

SPEAKERS: Registry[Estimator] = Registry("metadata.speakers", Estimator)
SPEAKERS.add("resemblyzer", f"{_M}.resemblyzer:ResemblyzerSpeakers", requires={**TORCH, "resemblyzer": "resemblyzer"},
             doc="GE2E window embeddings + AHC (embedded)")
SPEAKERS.add("pyannote-segmentation", f"{_M}.pyannote:PyannoteSegmentationSpeakers",
             requires={**TORCH, "pyannote.audio": "pyannote.audio"}, doc="powerset segmentation (hub weights)")
SPEAKERS.add("pyannote-diarization", f"{_M}.pyannote:PyannoteDiarizationSpeakers",
             requires={**TORCH, "pyannote.audio": "pyannote.audio"}, doc="diarization pipeline (hub weights)")

DNSMOS: Registry[Estimator] = Registry("metadata.dnsmos", Estimator)
DNSMOS.add("speechmos", f"{_M}.dnsmos:DNSMOS", requires={"onnxruntime": "onnxruntime", "speechmos": "speechmos"},
           doc="DNSMOS P.835 ONNX (opt-in)")

_SPEECHBRAIN = f"{_M}.speechbrain:SpeechBrainClassifier"
_SB_REQ = {**TORCH, "speechbrain": "speechbrain"}
EMOTION: Registry[Estimator] = Registry("metadata.emotion", Estimator)
EMOTION.add("speechbrain", _SPEECHBRAIN, requires=_SB_REQ, doc="IEMOCAP wav2vec2 (hub weights)")
ACCENT: Registry[Estimator] = Registry("metadata.accent", Estimator)
ACCENT.add("speechbrain", _SPEECHBRAIN, requires=_SB_REQ, doc="CommonAccent ECAPA (hub weights)")
LANGUAGE: Registry[Estimator] = Registry("metadata.language", Estimator)
LANGUAGE.add("speechbrain", _SPEECHBRAIN, requires=_SB_REQ, doc="VoxLingua107 ECAPA (hub weights)")

#: kind -> (registry, the backend name the metadata config selects)
KINDS: dict[str, tuple[Registry[Estimator], Any]] = {
    "loudness": (LOUDNESS, lambda cfg: "pyloudnorm"),
    "snr": (SNR, lambda cfg: cfg.snr_backend),
    "pitch": (PITCH, lambda cfg: getattr(cfg, "pitch_backend", "praat")),
    "span": (SPAN, lambda cfg: "energy"),
    "gender": (GENDER, lambda cfg: "evidence" if getattr(cfg, "gender_fusion", False) else cfg.gender_backend),
    "speakers": (SPEAKERS, lambda cfg: cfg.speakers_backend),
    "dnsmos": (DNSMOS, lambda cfg: "speechmos" if cfg.dnsmos else "none"),
    "emotion": (EMOTION, lambda cfg: cfg.emotion_backend),
    "accent": (ACCENT, lambda cfg: cfg.accent_backend),
    "language": (LANGUAGE, lambda cfg: cfg.language_backend),
}
#: kind -> configured names that load no estimator here (see the module docstring)
NOT_ESTIMATORS = {"speakers": ("none",), "dnsmos": ("none",), "emotion": ("none", "text-nrc"), "accent": ("none",),
                  "language": ("asr",)}


def selected(kind: str, cfg) -> str:
    """The backend name ``cfg`` (a MetadataConfig) selects for ``kind``."""
    return KINDS[kind][1](cfg)


def load_estimator(kind: str, cfg) -> Estimator | None:
    """The configured estimator of ``kind``, or None when the config switches it off or handles it elsewhere."""
    name = selected(kind, cfg)
    return None if name in NOT_ESTIMATORS.get(kind, ()) else KINDS[kind][0].get(name).from_config(cfg, kind=kind)
