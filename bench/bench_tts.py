"""Real-time factor per TTS backend and the round-trip gate's pass rate on the sample text corpus.

    python bench/bench_tts.py [--corpus samples/en/instructions.jsonl]
"""
from __future__ import annotations

import argparse
import io
import time

import soundfile as sf

from pipeline import ROOT
from pipeline.asr import load_asr
from pipeline.config import ASRConfig, TTSConfig
from pipeline.textcorpus import read_corpus
from pipeline.tts_stage import Synthesize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT / "samples/en/instructions.jsonl"))
    a = ap.parse_args()
    recs, _ = read_corpus(a.corpus)
    texts = [r.model_dump() for r in recs]
    asr = load_asr(ASRConfig())
    print(f"{'backend':12s} {'rows':>4s} {'audio_s':>8s} {'synth_s':>8s} {'RTF':>6s} {'gate_pass':>9s}")
    for cfg in (TTSConfig(backend="piper"), TTSConfig(backend="espeak-ng", voices=["en-us", "en-us+f3", "en-gb+m3"])):
        stage = Synthesize(cfg.model_copy(update={"gate_max_wer": None}), "bench", 1, "en")
        t0 = time.perf_counter()
        rows, rejects = stage.process(texts)
        synth = time.perf_counter() - t0
        audio_s = sum(sf.info(io.BytesIO(r["audio"]["bytes"])).duration for r in rows)
        gated = Synthesize(cfg, "bench", 1, "en", asr=asr)
        kept, rej = gated.process(texts)
        spoken = len(rows)
        print(f"{cfg.backend:12s} {spoken:4d} {audio_s:8.1f} {synth:8.2f} {synth / max(audio_s, 1e-9):6.3f} "
              f"{len(kept)}/{spoken} ({len(kept) / max(spoken, 1):.0%})")


if __name__ == "__main__":
    main()
