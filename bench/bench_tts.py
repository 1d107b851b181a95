"""Real-time factor per TTS backend and the round-trip gate's pass rate on the sample text corpus.

    python bench/bench_tts.py [--corpus samples/en/instructions.jsonl] [--backends piper,espeak-ng,kokoro,coqui]
                              [--per-voice kokoro]

RTF = synthesis seconds (the backend's synthesize calls only, after one warm-up call) / seconds of audio produced.
gate_pass = rows kept by the ASR round-trip gate / rows spoken (texts the stage rejects before synthesis, e.g. URLs,
are not counted). ``coqui`` is Coqui's default VITS architecture (~40 M parameters, 22.05 kHz) with random weights,
since no Coqui weights can be had offline: its RTF is that of a trained VITS, its audio is noise, so no gate.
Backends whose packages are missing are reported as skipped. ``--per-voice`` runs every voice of the named
backends over the whole corpus (one gate pass rate per voice).
"""
from __future__ import annotations

import argparse
import tempfile
import time

from pipeline import ROOT
from pipeline.backends.asr import load_asr
from pipeline.core.config import ASRConfig, TTSConfig
from pipeline.recipes.text import read_corpus
from pipeline.backends.tts.base import TTSError
from pipeline.stages.tts import TtsStage

KOKORO_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo", "jf_alpha*0.5+jm_kumo*0.5"]


def configs(names: list[str], tmp: str) -> dict[str, TTSConfig | str]:
    """backend label -> config, or the reason it is skipped."""
    out: dict[str, TTSConfig | str] = {}
    for name in names:
        if name == "piper":
            out[name] = TTSConfig(backend="piper")
        elif name == "espeak-ng":
            out[name] = TTSConfig(backend="espeak-ng", voices=["en-us", "en-us+f3", "en-gb+m3"])
        elif name == "kokoro":
            out[name] = TTSConfig(backend="kokoro", voices=KOKORO_VOICES)
        elif name == "coqui":
            try:
                from pipeline.backends.tts.coqui_testing import coqui_random_vits

                d = coqui_random_vits(f"{tmp}/vits", ["s1", "s2", "s3"], size="full")
                out["coqui*"] = TTSConfig(backend="coqui", coqui_model=str(d), voices=["s1", "s2", "s3"], gate_max_wer=None)
            except ImportError as e:
                out["coqui*"] = f"coqui-tts not installed ({e.name})"
        else:
            raise SystemExit(f"unknown backend {name!r}")
    return out


def run(label: str, cfg: TTSConfig, texts: list[dict], asr) -> tuple[str, dict]:
    t0 = time.perf_counter()
    try:
        stage = TtsStage(cfg, "bench", 1, "en", asr=asr if cfg.gate_max_wer is not None else None)
    except (TTSError, ImportError) as e:
        return f"{label:24s} skipped: {e}", {}
    load_s = time.perf_counter() - t0
    backend = stage.backend
    backend.synthesize("Warm up.", backend.voices()[0])
    stats = {"synth_s": 0.0, "audio_s": 0.0}
    inner = backend.synthesize

    def timed(text, voice=None, length_scale=1.0):
        t = time.perf_counter()
        audio, sr = inner(text, voice, length_scale)
        stats["synth_s"] += time.perf_counter() - t
        stats["audio_s"] += audio.size / sr
        return audio, sr

    backend.synthesize = timed
    kept, rejects = stage.process(texts)
    gated = sum(r["reason"] == "gate_wer" for r in rejects)
    failed = sum(r["reason"] == "tts_failed" for r in rejects)
    spoken = len(kept) + gated
    gate = "n/a" if cfg.gate_max_wer is None else f"{len(kept)}/{spoken} ({len(kept) / max(spoken, 1):.0%})"
    rtf = stats["synth_s"] / max(stats["audio_s"], 1e-9)
    line = (f"{label:24s} {load_s:6.1f} {spoken:4d} {stats['audio_s']:8.1f} {stats['synth_s']:8.2f} {rtf:6.3f} "
            f"{gate:>12s}" + (f"  tts_failed={failed}" if failed else ""))
    return line, {"kept": len(kept), "spoken": spoken, "rtf": rtf}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(ROOT / "samples/en/instructions.jsonl"))
    ap.add_argument("--backends", default="piper,espeak-ng,kokoro,coqui")
    ap.add_argument("--per-voice", default="", help="comma-separated backends to also run voice by voice")
    a = ap.parse_args()
    recs, _ = read_corpus(a.corpus)
    texts = [r.model_dump() for r in recs]
    asr = load_asr(ASRConfig())
    header = f"{'backend':24s} {'load_s':>6s} {'rows':>4s} {'audio_s':>8s} {'synth_s':>8s} {'RTF':>6s} {'gate_pass':>12s}"
    per_voice = {b for b in a.per_voice.split(",") if b}
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = configs([b for b in a.backends.split(",") if b], tmp)
        print(header)
        for label, cfg in cfgs.items():
            print(f"{label:24s} skipped: {cfg}" if isinstance(cfg, str) else run(label, cfg, texts, asr)[0], flush=True)
        for label, cfg in cfgs.items():
            if isinstance(cfg, str) or cfg.backend not in per_voice:
                continue
            print(f"\nper voice ({label}):\n{header}")
            for v in cfg.voices:
                print(run(f"{label}[{v}]", cfg.model_copy(update={"voices": [v]}), texts, asr)[0], flush=True)
    print("\n* random weights (architecture-true RTF only; the audio is noise, so no gate)")


if __name__ == "__main__":
    main()
