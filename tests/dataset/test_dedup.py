"""Dataset-wide dedup (pipeline/dataset/dedup.py): a re-uploaded file in another shard is removed from the
final tables with a reason naming its kept twin, and the accounting still covers every input file."""
from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core.config import load_profile
from pipeline.dataset import dedup
from pipeline.dataset import export as ex
from pipeline.run.plan import Run
from pipeline.run.runner import run_stage
from tests.conftest import SENTENCES


def _rows(d, table):
    return [r for f in sorted((d / table).glob("part-*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_cross_shard_duplicates_go_to_rejects_with_their_twin(corpus, tmp_path):
    audio = tmp_path / "a"
    audio.mkdir()
    shutil.copy(corpus / "audio" / "s0.wav", audio / "s0.wav")
    shutil.copy(corpus / "audio" / "s1.mp3", audio / "s1.mp3")
    shutil.copy(corpus / "audio" / "s0.wav", audio / "s0_reupload.wav")  # the same recording again
    m = tmp_path / "m.jsonl"
    recs = [("s0.wav", SENTENCES[0][0]), ("s1.mp3", SENTENCES[1][0]), ("s0_reupload.wav", SENTENCES[0][0])]
    m.write_text("".join(json.dumps({"path": f"a/{n}", "text": t}) + "\n" for n, t in recs))
    p = load_profile("en", input=str(m), shard_size=1, **{"tts.input": None})
    run = Run(p, tmp_path / "out")
    assert run.plan.n_shards == 3  # each file its own shard: the twins are in different shards
    run_stage(run, "ingest", progress=False)
    manifest = ex.export(run, stages=("ingest",))

    utts = _rows(run.dir, "utterances")
    rejects = [r for r in _rows(run.dir, "rejects") if r["stage"] == "dedup"]
    kept = {r["source_path"]: r["id"] for r in utts}
    assert set(kept) == {"a/s0.wav", "a/s1.mp3"}
    assert len(rejects) == 1 and rejects[0]["reason"] == "dataset_duplicate"
    assert rejects[0]["source_path"] == "a/s0_reupload.wav" and kept["a/s0.wav"] in rejects[0]["detail"]
    assert manifest["reject_reasons"]["dedup:dataset_duplicate"] == 1
    assert ex.check_accounting(run) == {"sources": 3, "accounted": 3}  # every input: in utterances or rejects
    assert manifest["tables"]["utterances"]["rows"] == 2

    # the profile switch: no dedup => both twins kept (export again: the parts are rewritten)
    run.profile = p.model_copy(update={"export": p.export.model_copy(update={"dedup": False})})
    ex.export(run, stages=("ingest",))
    assert {r["source_path"] for r in _rows(run.dir, "utterances")} == {"a/s0.wav", "a/s1.mp3", "a/s0_reupload.wav"}
    assert not [r for r in _rows(run.dir, "rejects") if r["stage"] == "dedup"]


def test_clusters_link_near_twins_only_and_keep_the_first():
    texts = ["Describe the speaker: a calm male voice reads a sentence about the library opening hours.",
             "Describe the speaker: a calm male voice reads a sentence about the library opening hours!",
             "A cheerful woman talks quickly about planting tomatoes and sunflowers in her garden.",
             "Describe the speaker - a calm male voice reads a sentence about the library opening hours",
             "Short."]
    cfg_t, perm = 0.8, 64
    b, r = dedup.bands_for(cfg_t, perm)
    h = dedup.Hasher(perm, b, r)
    sigs = h.signatures(texts)
    bands = h.band_hashes(sigs)
    order = [dedup.order_key(k, 0) for k in (3, 1, 2, 0, 4)]  # dataset order: text 3 first, then 1, 2, 0, 4
    t = pa.Table.from_pylist([{"id": f"i{i}", "utterance_id": None, "order": order[i], "source_path": None, "duration_s": None,
                               "sig": sigs[i].tobytes(), "bands": bands[i].tobytes()} for i in range(len(texts))], schema=dedup.SIG_SCHEMA)
    got = dedup._clusters(t, h, cfg_t, None)
    assert got == {0: 3, 1: 3}  # the three library variants: the first in dataset order (text 3) is kept
