"""The ASR stage on replayed real results: kept rows get the ASR columns, the rest become rejects."""
from __future__ import annotations

import json

from pipeline.core import schema
from pipeline.core.audio import encode_flac
from pipeline.core.config import load_profile
from pipeline.stages.asr import transcribe
from tests.backends.test_asr import ENGLISH, batched, clips, fw  # noqa: F401 (fixtures)


def test_stage_writes_columns_and_rejects(batched, clips):
    class Replay:  # the stage's contract with a backend, replaying the real results above
        name, model_id = "faster-whisper", "replay"

        def transcribe_batch(self, audios, sample_rate, language=None):
            assert sample_rate == 16000 and len(audios) == 2
            return [batched[ENGLISH[0]], batched["german"]]

    rows = [{"id": f"u{i}", "source_id": f"s{i}", "source_path": n, "segment_index": 0, "start_s": 0.0, "end_s": len(clips[n]) / 16000, "sample_rate": 16000,
             "duration_s": len(clips[n]) / 16000, "reference_text": "He might even have been made amiable himself." if i == 0 else None,
             "audio": {"bytes": encode_flac(clips[n], 16000), "path": None}} for i, n in enumerate([ENGLISH[0], "german"])]
    kept, rejects = transcribe(Replay(), rows, load_profile("en"))
    assert [r["id"] for r in kept] == ["u0"] and kept[0]["wer"] == 0.0 and kept[0]["cer"] == 0.0
    assert json.loads(kept[0]["asr_words_json"])
    assert rejects[0]["id"] == "u1" and rejects[0]["reason"] == "language_mismatch"
    t = schema.to_table("utterances", kept)
    assert t.column("asr_words_json")[0].as_py() == kept[0]["asr_words_json"]
