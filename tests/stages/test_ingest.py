"""Ingest stage on real files: formats, resampling, VAD segmentation, every bad-file reason."""
import io

import numpy as np
import pytest
import soundfile as sf

from pipeline.core.audio import AudioError, load
from pipeline.core.config import IngestConfig
from pipeline.recipes.audio import read_manifest
from pipeline.stages.ingest import IngestStage, plan_segments
from tests.conftest import EXPECTED_REJECTS


@pytest.fixture(scope="module")
def ingest():
    return IngestStage(IngestConfig())


def test_decodes_every_format_to_16k_mono(corpus):
    for name in ["s0.wav", "s1.mp3", "s2.m4a", "s3.ogg", "long.flac"]:
        x = load(corpus / "audio" / name, 16000)
        assert x.ndim == 1 and x.dtype == np.float32
        assert 1.5 < x.size / 16000 < 60, name
        assert np.abs(x).max() > 0.05, name
    # 44.1 kHz stereo source: duration preserved by the resampler
    info = sf.info(corpus / "audio" / "s0.wav")
    assert info.samplerate == 44100 and info.channels == 2
    assert abs(load(corpus / "audio" / "s0.wav").size / 16000 - info.duration) < 0.01


@pytest.mark.parametrize("name,reason", [("empty.wav", "empty"), ("corrupt.mp3", "corrupt"), ("header_only.wav", "zero_length")])
def test_bad_files_raise_with_reason(corpus, name, reason):
    with pytest.raises(AudioError) as e:
        load(corpus / "audio" / name)
    assert e.value.reason == reason


def test_every_file_is_kept_or_rejected_with_reason(corpus, ingest):
    rows, rejects = ingest.process(read_manifest(corpus / "manifest.jsonl"))
    by_path = {r["source_path"]: r["reason"] for r in rejects}
    for path, reason in EXPECTED_REJECTS.items():
        assert by_path.get(path) == reason, (path, by_path)
    kept = {r["source_path"] for r in rows}
    assert kept == {"audio/s0.wav", "audio/s1.mp3", "audio/s2.m4a", "audio/s3.ogg", "audio/long.flac"}
    for r in rows:
        x, sr = sf.read(io.BytesIO(r["audio"]["bytes"]))
        assert sr == 16000 and x.ndim == 1
        assert abs(x.size / sr - r["duration_s"]) < 1e-3
        assert 1.0 <= r["duration_s"] <= 30.0


def test_long_file_is_segmented_in_silences(corpus, ingest):
    src = [s for s in read_manifest(corpus / "manifest.jsonl") if s.rel == "audio/long.flac"][0]
    rows, rejects = ingest.process_source(src)
    assert len(rows) >= 2 and not rejects
    total = load(corpus / "audio" / "long.flac").size / 16000
    assert total > 30
    spans = [(r["start_s"], r["end_s"]) for r in rows]
    assert all(e - s <= 30.0 for s, e in spans)
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))  # ordered, no overlap
    assert sum(e - s for s, e in spans) > 0.7 * total  # speech is not dropped
    assert [r["id"] for r in rows] == [f"{src.source_id}-{i:04d}" for i in range(len(rows))]
    assert all(r["reference_text"] is None for r in rows)  # whole-file text cannot be aligned to segments


def test_plan_segments_splits_overlong_region():
    segs = plan_segments([(0.0, 70.0)], 70.0, 30.0)
    assert len(segs) == 3 and all(e - s <= 30.0 + 1e-9 for s, e in segs)
    assert plan_segments([(0.5, 3.0)], 5.0, 30.0) == [(0.0, 5.0)]


def test_vad_comes_from_the_registry(ingest):
    from pipeline.backends.vad import VAD

    assert IngestConfig().vad.backend in VAD and isinstance(ingest.vad, VAD.get(IngestConfig().vad.backend))
    assert (ingest.vad.threshold, ingest.vad.min_silence_ms, ingest.vad.speech_pad_ms) == (0.5, 300, 100)
