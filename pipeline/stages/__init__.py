"""Stages: one job each, behind the Stage protocol (pipeline.stages.base), in the order they run."""
from pipeline.core.registry import Registry
from pipeline.stages.base import SOURCES, TEXTS, Stage

STAGES: Registry[Stage] = Registry("stage", Stage)
STAGES.add("ingest", "pipeline.stages.ingest:IngestStage", doc="decode, resample, VAD-segment input files")
STAGES.add("metadata", "pipeline.stages.metadata:MetadataStage", doc="acoustic and text metadata per utterance")
STAGES.add("asr", "pipeline.stages.asr:AsrStage", doc="Whisper pseudo-labels with reject filters")
STAGES.add("llm", "pipeline.stages.llm.stage:LlmStage", doc="descriptions, QA pairs, label tasks; quality filters")
STAGES.add("tts", "pipeline.stages.tts:TtsStage", doc="speak the text instruction corpus, ASR round-trip gate")

ORDER = tuple(STAGES.names())

__all__ = ["ORDER", "SOURCES", "STAGES", "TEXTS", "Stage"]
