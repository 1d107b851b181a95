"""ASR throughput: batched vs sequential ``transcribe`` on the same model and clips, in one run.

    python bench/bench_asr.py                      # sample corpus clips, embedded Whisper base, CPU int8
    python bench/bench_asr.py --repeat 3 --runs 3  # more clips per run (fuller batches), more runs (noisy CPUs)
    python bench/bench_asr.py --utterances data/en/utterances       # clips of a built dataset
    python bench/bench_asr.py --model large-v3 --device cuda --compute-type float16 --batch-size 16

Modes (each on the same clips, same model instance):

- ``sequential``: ``WhisperModel.transcribe`` one clip at a time (what ``batched: false`` does).
- ``batched``: ``FasterWhisperBackend.transcribe_batch`` (30 s windows, batch across clips; the default).
- ``batched-fit``: the same with ``encoder_window: fit`` (encoder input = longest clip in the batch + 1 s).
- ``bip-concat``: faster-whisper's own ``BatchedInferencePipeline`` on all clips concatenated, with
  ``clip_timestamps`` at the clip boundaries (one language for the whole call, no temperature fallback).

Prints utterances/s and audio-seconds/s per mode (median and best of ``--runs``), the speed-up over
sequential, corpus WER/CER against the reference texts, and the WER between each mode's text and
sequential's.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.backends.asr import load_asr  # noqa: E402
from pipeline.backends.asr.base import ASRResult  # noqa: E402
from pipeline.core.audio import decode_bytes, load  # noqa: E402
from pipeline.core.config import ASRConfig  # noqa: E402
from pipeline.core.text import normalize  # noqa: E402
from pipeline.quality.asr_filters import summarize_wer  # noqa: E402


def sample_clips() -> tuple[list[np.ndarray], list[str | None], list[str]]:
    refs = {}
    for line in (ROOT / "samples/en/manifest.jsonl").read_text().splitlines():
        r = json.loads(line)
        refs[Path(r["path"]).name] = r.get("text")
    audios, texts, names = [], [], []
    for f in sorted(glob.glob(str(ROOT / "samples/en/audio/*"))):
        name = Path(f).name
        if not name.startswith(("human_", "piper_", "espeak_", "noisy_")):
            continue  # bad files and the 45 s long file (the dataset cuts it into utterances)
        audios.append(load(f))
        texts.append(refs.get(name))
        names.append(name)
    return audios, texts, names


def utterance_clips(folder: str) -> tuple[list[np.ndarray], list[str | None], list[str]]:
    import pyarrow.parquet as pq

    files = sorted(Path(folder).glob("part-*.parquet"))
    rows = pq.ParquetDataset(files).read(columns=["id", "audio", "reference_text"]).to_pylist()
    return ([decode_bytes(r["audio"]["bytes"])[0] for r in rows], [r["reference_text"] for r in rows],
            [r["id"] for r in rows])


def bip_concat(backend, audios: list[np.ndarray], language: str | None, batch_size: int) -> list[ASRResult]:
    """faster-whisper's BatchedInferencePipeline over the clips concatenated, split back by clip_timestamps."""
    from faster_whisper import BatchedInferencePipeline

    pipe = BatchedInferencePipeline(backend.model)
    bounds, t = [], 0.0
    for a in audios:
        d = len(a) / 16000
        bounds.append({"start": t, "end": t + d})
        t += d
    # multilingual=True: a language token per clip (otherwise the first 30 s decide the language of all clips)
    segs, info = pipe.transcribe(np.concatenate(audios), language=language, batch_size=batch_size,
                                 clip_timestamps=bounds, word_timestamps=True, beam_size=backend.cfg.beam_size,
                                 multilingual=language is None)
    per: list[list] = [[] for _ in audios]
    starts = np.array([b["start"] for b in bounds])
    for s in segs:
        i = int(np.searchsorted(starts, (s.seek + 1) / 100, side="right") - 1)  # seek = int(clip offset * 100)
        per[i].append(s)
    out = []
    for ss in per:
        text = " ".join(s.text.strip() for s in ss).strip()
        out.append(ASRResult(text, info.language, info.language_probability,
                             float(np.mean([s.avg_logprob for s in ss])) if ss else None,
                             float(max(s.no_speech_prob for s in ss)) if ss else None, None))
    return out


def wer_between(a: list[ASRResult], b: list[ASRResult]) -> float:
    import jiwer

    pairs = [(normalize(x.text), normalize(y.text) or "<empty>") for x, y in zip(a, b) if normalize(x.text)]
    return float(jiwer.wer([p[0] for p in pairs], [p[1] for p in pairs])) if pairs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utterances", help="folder of utterances/part-*.parquet (default: the sample corpus clips)")
    ap.add_argument("--model", default="embedded:whisper-base-ct2")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--language", default=None, help="force a language (default: detect per clip)")
    ap.add_argument("--repeat", type=int, default=1, help="use the clip set this many times per run")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per mode (the CPU may be shared: report median)")
    ap.add_argument("--modes", default="sequential,batched,batched-fit,bip-concat")
    a = ap.parse_args()

    audios, refs, names = utterance_clips(a.utterances) if a.utterances else sample_clips()
    audios, refs = audios * a.repeat, refs * a.repeat
    secs = sum(len(x) for x in audios) / 16000
    cfg = ASRConfig(model=a.model, device=a.device, compute_type=a.compute_type, cpu_threads=a.cpu_threads,
                    batch_size=a.batch_size)
    backend = load_asr(cfg)
    fit = copy.copy(backend)  # same model instance, other window setting
    fit.cfg = cfg.model_copy(update={"encoder_window": "fit"})
    runners = {
        "sequential": lambda: backend.transcribe_sequential(audios, 16000, a.language),
        "batched": lambda: backend.transcribe_batch(audios, 16000, a.language),
        "batched-fit": lambda: fit.transcribe_batch(audios, 16000, a.language),
        "bip-concat": lambda: bip_concat(backend, audios, a.language, a.batch_size),
    }
    modes = [m for m in a.modes.split(",") if m]
    print(f"{len(audios)} clips, {secs:.1f} s of audio, model {a.model} on {a.device}/{a.compute_type}, "
          f"batch_size {a.batch_size}, {a.runs} runs per mode", flush=True)
    backend.transcribe_batch(audios[:2], 16000, a.language)  # warm-up (allocations, first-call costs)
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    results: dict[str, list[ASRResult]] = {}
    for r in range(a.runs):  # interleaved, so that load changes on a shared machine hit every mode
        for m in modes:
            t0, c0 = time.perf_counter(), time.process_time()
            results[m] = runners[m]()
            times[m].append(time.perf_counter() - t0)
            cpu[m].append(time.process_time() - c0)
            print(f"  run {r + 1} {m:12s} {times[m][-1]:7.2f} s wall {cpu[m][-1]:7.2f} s CPU", flush=True)
    seq = statistics.median(times["sequential"]) if "sequential" in times else None
    print(f"\n{'mode':12s} {'utt/s med':>9s} {'utt/s best':>10s} {'audio-s/s':>9s} {'x seq':>6s} {'CPU-s/utt':>9s} "
          f"{'x seq CPU':>9s} {'WER':>6s} {'CER':>6s} {'WER vs seq':>10s}")
    seq_cpu = statistics.median(cpu["sequential"]) if "sequential" in cpu else None
    for m in modes:
        med, best = statistics.median(times[m]), min(times[m])
        s = summarize_wer([{"reference_text": ref, "asr_text": x.text} for ref, x in zip(refs, results[m])])
        vs = wer_between(results["sequential"], results[m]) if "sequential" in results else float("nan")
        c = statistics.median(cpu[m])
        print(f"{m:12s} {len(audios) / med:9.2f} {len(audios) / best:10.2f} {secs / med:9.2f} "
              f"{(seq / med if seq else float('nan')):6.2f} {c / len(audios):9.2f} {(seq_cpu / c if seq_cpu else float('nan')):9.2f} "
              f"{s['corpus_wer'] or 0:6.3f} {s['corpus_cer'] or 0:6.3f} {vs:10.3f}")
    if seq and "batched" in times:
        print(f"\nbatched / sequential speed-up (median of {a.runs}): {seq / statistics.median(times['batched']):.2f}x wall, "
              f"{seq_cpu / statistics.median(cpu['batched']):.2f}x CPU time")


if __name__ == "__main__":
    main()
