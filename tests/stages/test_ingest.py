"""Ingest stage on real files: formats, resampling, VAD segmentation, every bad-file reason."""
import io
import subprocess

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


# ---- long recordings in bounded memory (issue 18) --------------------------------------------------
@pytest.fixture(scope="module")
def lecture(tmp_path_factory):
    """A 4-minute one-speaker recording: espeak sentences with pauses of varied length (22.05 kHz)."""
    from tests.conftest import SENTENCES, espeak

    d = tmp_path_factory.mktemp("lecture")
    clips = []
    for i, (t, v, _) in enumerate(SENTENCES):
        x, sr = sf.read(espeak(t, "en-us", d / f"t{i}.wav"), dtype="float32")
        clips.append(x)
    rng = np.random.default_rng(3)
    parts, n = [], 0
    while n < 240 * sr:
        x = clips[rng.integers(len(clips))]
        parts += [x, np.zeros(int(sr * rng.choice([0.4, 0.8, 1.5, 3.0])), dtype=np.float32)]
        n += x.size + parts[-1].size
    sf.write(d / "lecture.wav", np.concatenate(parts)[: 240 * sr], sr)
    ffmpeg_m4a = d / "lecture.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(d / "lecture.wav"), str(ffmpeg_m4a)], check=True)
    return d


def test_load_window_matches_a_slice_of_the_whole_decode(lecture):
    from pipeline.core.audio import load_window

    whole = load(lecture / "lecture.wav")
    for a, b in [(0.0, 7.5), (61.3, 95.0), (230.0, 240.0)]:
        w = load_window(lecture / "lecture.wav", a, b)
        ref = whole[int(round(a * 16000)): int(round(b * 16000))]
        assert abs(w.size - ref.size) <= 1
        n = min(w.size, ref.size)
        assert np.abs(w[:n] - ref[:n]).max() < 2e-3  # same samples up to resampler edge effects
    # a format soundfile cannot seek (AAC in MP4) goes through ffmpeg -ss
    m = load_window(lecture / "lecture.m4a", 100.0, 110.0)
    assert abs(m.size - 160000) < 2000 and np.abs(m).max() > 0.05


def test_long_file_is_planned_as_spans_and_small_files_are_not_probed(lecture, corpus, monkeypatch):
    from pipeline.core import audio
    from pipeline.recipes.audio import Source, split_long
    from pipeline.run.plan import shard_starts

    probed = []
    real = audio.probe_duration
    monkeypatch.setattr(audio, "probe_duration", lambda p: probed.append(p) or real(p))
    srcs = [Source(path=str(corpus / "audio" / "short.wav"), rel="short.wav"),
            Source(path=str(lecture / "lecture.wav"), rel="lecture.wav"),
            Source(path=str(corpus / "audio" / "s3.ogg"), rel="s3.ogg")]
    units = split_long(srcs, 60.0)
    assert [u.rel for u in units] == ["short.wav"] + ["lecture.wav"] * 4 + ["s3.ogg"]
    assert [u.span for u in units] == [None, 0, 1, 2, 3, None] and units[1].n_spans == 4
    assert abs(units[1].duration_s - 240.0) < 1e-3
    assert probed == [str(lecture / "lecture.wav")]  # files too small to last 60 s: no header probe at plan time
    assert shard_starts([u.dump() for u in units], 8) == [0, 1, 2, 3, 4, 5]  # a span is a shard of its own
    assert split_long(srcs, 0) == srcs


def test_windowed_spans_give_the_segments_of_a_whole_file_decode(lecture):
    from pipeline.recipes.audio import Source, split_long
    from pipeline.stages.ingest import whole_file_segments

    st = IngestStage(IngestConfig(long_file_span_s=60.0))
    units = split_long([Source(path=str(lecture / "lecture.wav"), rel="lecture.wav", text="whole text")], 60.0)
    rows, rejects = st.process(units)
    assert not rejects
    ref = [s for w in whole_file_segments(load(lecture / "lecture.wav"), 16000, st.vad, 4, 30.0) for s in w]
    got = [(r["start_s"], r["end_s"]) for r in rows]
    assert len(got) == len(ref) >= 8
    assert max(max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in zip(got, ref)) < 0.25  # VAD boundary tolerance
    assert all(got[i][1] <= got[i + 1][0] for i in range(len(got) - 1))  # ordered, no overlap across spans
    assert all(e - s <= 30.0 + 1e-6 for s, e in got)
    assert sum(e - s for s, e in got) > 0.6 * 240
    assert len({r["id"] for r in rows}) == len(rows) and sorted(r["segment_index"] for r in rows) == [r["segment_index"] for r in rows]
    assert all(r["reference_text"] is None and "whole text" in r["labels_json"] for r in rows)
    for r in rows[:3]:  # the clip is the audio at its stated place in the file
        x, sr = sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32")
        ref_clip = load(lecture / "lecture.wav")[int(round(r["start_s"] * 16000)):][: x.size]
        assert np.abs(x - ref_clip).max() < 2e-3


def test_a_silent_span_is_rejected_not_dropped(tmp_path):
    from pipeline.recipes.audio import Source, split_long

    sr = 16000
    x, _ = sf.read(io.BytesIO(_tone_speech(sr)), dtype="float32")
    sf.write(tmp_path / "gap.wav", np.concatenate([np.zeros(150 * sr, dtype=np.float32), x]), sr)
    st = IngestStage(IngestConfig(long_file_span_s=60.0))
    units = split_long([Source(path=str(tmp_path / "gap.wav"), rel="gap.wav")], 60.0)
    rows, rejects = st.process(units)
    spans_rejected = {r["id"].rsplit("-", 1)[1] for r in rejects if r["reason"] == "silent"}
    assert {"span000", "span001"} <= spans_rejected
    assert rows and all(r["start_s"] >= 140 for r in rows)


def _tone_speech(sr: int) -> bytes:
    from tests.conftest import SENTENCES

    buf = io.BytesIO()
    clips = []
    for t, v, _ in SENTENCES * 3:
        out = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", t], capture_output=True, check=True).stdout
        a, r = sf.read(io.BytesIO(out), dtype="float32")
        clips += [a, np.zeros(r // 2, dtype=np.float32)]
    sf.write(buf, np.concatenate(clips), r, format="WAV")
    return buf.getvalue()
