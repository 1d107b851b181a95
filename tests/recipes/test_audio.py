"""pipeline.recipes.audio: folder discovery and manifests (JSONL, JSON, CSV, TSV) -> Source records."""
from pipeline.recipes.audio import discover, read_manifest


def test_folder_discovery_lists_everything(corpus):
    rels = [s.rel for s in discover(corpus / "audio")]
    assert rels == sorted(rels) and "notes.txt" in rels and "long.flac" in rels and len(rels) == 11


def test_manifest_reads_text_speaker_labels(corpus):
    srcs = read_manifest(corpus / "manifest.jsonl")
    s0 = srcs[0]
    assert s0.rel == "audio/s0.wav" and s0.text.startswith("The library") and s0.labels == {"gender": "male"}
    assert s0.path == str(corpus / "audio" / "s0.wav")
