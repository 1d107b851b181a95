"""Does the produced data teach a speech LM? Build a benchmark corpus with the tool, train on it, score it.

1. corpus  (bench/train_corpus.py): 48 speakers (24 female, 24 male: Kokoro styles and blends, Piper joe,
   espeak-ng voices x variants), 7 unique sentences each at three speeds and four SNRs; labels known by
   construction in the manifest. Cached: clips already there are kept.
2. dataset: the tool's stages ingest -> metadata -> asr, then the llm stage's label tasks only (template
   instruction rows: asr, gender, speaking_rate, pitch, noise_level, language; the LLM descriptions and QA
   pairs are left out: ~15 s per utterance on the 0.5B model on 2 cores), exported. Cached (dataset.json).
   The tool's own labels are compared with the known ones (agreement table).
3. DeSTA2-style training (pipeline.train) with the split by speaker: closed questions for gender, speaking
   rate and noise (the manifest's known labels) + ASR (the known sentence), scored by likelihood / WER
   against no-audio, ASR-text and shuffled-audio controls, with 90 % cluster-bootstrap intervals.
4. GRASS (pipeline.train.grass) on the shipped Whisper base converted from CTranslate2 to transformers
   (bench/convert_whisper_ct2.py, checked against faster-whisper), same examples and split.

Writes bench/results/bench_train.{json,md} (and everything under --out).

    python bench/bench_train.py                 # make bench-train
    python bench/bench_train.py --skip-grass --steps 300
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

LABEL_TASKS = [
    {"name": "gender", "field": "labels.gender", "choices": ["male", "female"],
     "prompt": "Is the speaker male or female?",
     "synonyms": {"male": ["male", "man"], "female": ["female", "woman"]}},
    {"name": "speaking_rate", "field": "labels.speed", "choices": ["slow", "normal", "fast"],
     "prompt": "Is the speech slow, normal or fast?",
     "synonyms": {"slow": ["slow", "slowly"], "normal": ["normal", "moderate"], "fast": ["fast", "quick", "quickly"]}},
    {"name": "noise_level", "field": "labels.noise", "choices": ["clean", "noisy"],
     "prompt": "Is the recording clean or noisy?",
     "synonyms": {"clean": ["clean", "clear"], "noisy": ["noisy", "noise"]}},
]
TRAIN = {  # sized for ~800 training examples and 2 shared CPU cores: short inputs (empty system turn, 16 encoder
    # frames = 0.32 s per audio token, short questions), a 2.7 M-parameter adapter, per-example loss; the frozen
    # encoder on Whisper's own 30 s window (what every measured run in bench/results used; a 10 s window,
    # `--set encoder_window_s=10`, computes the features ~3x faster but was not measured with this model)
    "train.tasks": ["asr", "labels"], "train.label_tasks": LABEL_TASKS, "train.encoder_window_s": None, "train.adapter_hidden": 256, "train.pool": 16,
    "train.system_prompt": "", "train.batch_size": 8, "train.lr": 2e-3, "train.warmup_steps": 20,
    "train.checkpoint_every": 40, "train.early_stopping_patience": 3, "train.max_new_tokens": 24, "train.keep_checkpoints": 1,
}


WHISPER = "embedded:whisper-base-ct2"
# GRASS on it: the decoder (converted to transformers) fine-tuned; the frozen encoder run by CTranslate2 (same
# weights, int8) on a 10 s window (every clip here is shorter), 3x cheaper than Whisper's 30 s
GRASS = {"lr": 5e-5, "checkpoint_every": 40, "batch_size": 8, "warmup_steps": 20, "encoder_backend": "ctranslate2",
         "encoder_window_s": 10.0}


def check_conversion(wdir: Path, n_clips: int = 12) -> dict:
    """The converted Whisper vs CTranslate2 on the kept sample clips of samples/en (encoder output, greedy ids)."""
    from pipeline.core.audio import load
    from pipeline.core.model_cache import resolve
    from pipeline.train.grass.convert import compare_with_ct2

    clips = [r for r in map(json.loads, (ROOT / "samples/en/manifest.jsonl").read_text().splitlines())
             if r.get("labels", {}).get("expect") == "kept"][:n_clips]
    res = compare_with_ct2(wdir, resolve(WHISPER), [load(ROOT / "samples/en" / r["path"])[: 30 * 16000] for r in clips])
    for r, c in zip(res, clips):
        r["clip"] = c["path"]
        r["same_ids"] = r["ct2_ids"] == r["hf_ids"]
    summary = {"clips": len(res), "identical_greedy_ids": sum(r["same_ids"] for r in res),
               "encoder_max_abs_diff": round(max(r["encoder_max_abs_diff"] for r in res), 5),
               "encoder_min_cosine": round(min(r["encoder_cosine"] for r in res), 6)}
    return {"summary": summary, "clips": [{k: r[k] for k in ("clip", "same_ids", "encoder_max_abs_diff", "encoder_cosine",
                                                              "hf_text")} for r in res]}


# the ASR stage on 2 shared cores: the encoder window fitted to the clips (<= 10 s here, 3x less than 30 s), greedy
# without the temperature-fallback ladder, English forced (the Japanese Kokoro styles speaking English are
# otherwise detected as ja and rejected), the low-confidence reject relaxed so noisy clips stay in the benchmark
ASR = {"asr.encoder_window": "fit", "asr.temperatures": [0.0], "asr.language": "en", "asr.min_avg_logprob": -3.0,
       "asr.word_timestamps": False}


def log(msg: str) -> None:
    print(f"[bench_train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def linear_probe(profile, data: Path) -> dict:
    """Is the label in the frozen encoder's output at all? Per label task, a logistic regression on the cached
    encoder features (mean and standard deviation over the clip's frames) fitted on the train + val examples and
    scored on the test examples of the same speaker split: what a linear read-out of the audio gets, the
    ceiling to hold the trained model against (a model below it has a training problem, not a data one)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from pipeline.train.run import TrainRun

    tr = TrainRun(profile, str(data))
    by_task: dict[str, dict[str, list]] = {}
    for e in tr.examples():
        if e.kind == "label":
            d = by_task.setdefault(e.task, {"train": [], "test": []})
            d["test" if e.split == "test" else "train"].append(e)
    audio, out = tr.audio(), {}
    for task, d in sorted(by_task.items()):
        def xy(exs):
            feats = tr.features([e.audio_key for e in exs])
            rows = []
            for e, f in zip(exs, feats):
                n = len(f) if not audio[e.audio_key]["duration_s"] else max(1, min(len(f), int(audio[e.audio_key]["duration_s"] * 50)))
                rows.append(np.concatenate([f[:n].mean(0), f[:n].std(0)]))
            return np.array(rows), np.array([e.reference for e in exs])
        if not d["train"] or not d["test"]:
            continue
        x, y = xy(d["train"])
        xt, yt = xy(d["test"])
        clf = LogisticRegression(max_iter=5000, C=0.1).fit(x, y)
        out[task] = {"accuracy": round(float((clf.predict(xt) == yt).mean()), 3), "n_test": int(len(yt)),
                     "n_train": int(len(y))}
    return out


def build_dataset(profile, out: Path) -> dict:
    """ingest -> metadata -> asr -> llm (label tasks only) -> export, cached in out/dataset.json."""
    marker = out / "dataset.json"
    if marker.exists():
        return json.loads(marker.read_text())
    from pipeline.core.rows import transcript_of
    from pipeline.dataset.export import export
    from pipeline.run.runner import Run, run_stage
    from pipeline.stages.llm.label_tasks import LabelTasks
    from pipeline.stages.llm.seed import seed_description

    run = Run(profile, out)
    t = {}
    for stage in ("ingest", "metadata", "asr"):
        t0 = time.time()
        run_stage(run, stage, progress=False)
        t[stage] = round(time.time() - t0, 1)
        log(f"dataset: {stage} {t[stage]} s")
    t0 = time.time()
    labels = LabelTasks(profile.llm, profile.dataset, profile.language)
    for k in run.shard_ids("llm"):
        if run.done("llm", k):
            continue
        rows = run.input_rows("llm", k)
        tr = {r["id"]: transcript_of(r) for r in rows}
        out_rows, rejects = labels.process(rows, tr, {r["id"]: seed_description(r, tr[r["id"]][0], profile.language) for r in rows})
        run.write_shard("llm", k, out_rows, rejects)
    t["llm_label_tasks"] = round(time.time() - t0, 1)
    t0 = time.time()
    export(run)
    t["export"] = round(time.time() - t0, 1)
    res = {"timings_s": t, "agreement": label_agreement(out / profile.language)}
    marker.write_text(json.dumps(res, indent=1))
    return res


def label_agreement(data: Path) -> dict:
    """How often the tool's own labels (metadata estimates as the label-task templates word them) match the
    labels known by construction."""
    from pipeline.core.rows import manifest_labels
    from pipeline.stages.llm.seed import snr_label, speed_label_for
    from pipeline.train.data import read_table

    rows = list(read_table(data, "utterances"))
    out = {"utterances": len(rows)}
    pairs = {"gender_estimate": [], "speaking_rate": [], "noise_level": []}
    for u in rows:
        lab = manifest_labels(u)
        if (u.get("gender_source") or "").startswith(("evidence:", "voice2gender")):  # the metadata stage's estimate
            pairs["gender_estimate"].append((lab.get("gender"), u.get("gender") or "abstained"))
        if u.get("asr_text") and u.get("duration_s"):
            span = u.get("speech_span_s") or u["duration_s"]
            rate = speed_label_for(u.get("reference_text") or u["asr_text"], float(span), "en")[0]
            pairs["speaking_rate"].append((lab.get("speed"), {"normal speed": "normal"}.get(rate, rate)))
        if u.get("snr_db") is not None:
            q = snr_label(u["snr_db"], u.get("snr_capped")).split(" (")[0]
            pairs["noise_level"].append((lab.get("noise"), "clean" if q in ("clean", "fairly clean") else "noisy"))
    for k, v in pairs.items():
        if v:
            conf: dict[str, dict[str, int]] = {}
            for a, b in v:
                conf.setdefault(str(a), {}).setdefault(str(b), 0)
                conf[str(a)][str(b)] += 1
            out[k] = {"n": len(v), "agreement": round(sum(a == b for a, b in v) / len(v), 3), "confusion": conf}
    return out


def make_profile(manifest: Path, steps: int, sets: list[str] | None = None):
    from pipeline.core.config import load_profile
    from pipeline.train.entry import parse_overrides

    overrides = {**TRAIN, "train.max_steps": steps, **parse_overrides(sets)}
    profile = load_profile("en", input=str(manifest), **{"shard_size": 24, **ASR, **overrides})
    return profile.model_copy(update={"tts": profile.tts.model_copy(update={"input": None})})  # no TTS rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/tmp/bench_train")
    ap.add_argument("--steps", type=int, default=480, help="DeSTA steps (validation loss was still falling at 480 here)")
    ap.add_argument("--per-speaker", type=int, default=7, help="utterances per speaker (48 speakers)")
    ap.add_argument("--grass-steps", type=int, default=160)
    ap.add_argument("--skip-grass", action="store_true")
    ap.add_argument("--skip-desta", action="store_true", help="score the DeSTA run already under --out (GRASS only)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="train config override (as in python -m pipeline train)")
    a = ap.parse_args()
    from pipeline.train.entry import run_all

    import train_corpus
    import train_results

    out = Path(a.out)
    t_all = time.time()
    timings = {}
    t0 = time.time()
    manifest = train_corpus.build(out / "corpus", a.per_speaker, log=log)
    corpus = json.loads((out / "corpus" / "corpus.json").read_text())
    timings["corpus"] = round(time.time() - t0, 1)
    log(f"corpus: {corpus['utterances']} utterances, {corpus['speakers']} speakers ({timings['corpus']} s)")
    profile = make_profile(manifest, a.steps, a.set)
    t0 = time.time()
    dataset = build_dataset(profile, out / "data")
    timings["dataset"] = round(time.time() - t0, 1)
    log(f"dataset: {timings['dataset']} s")
    if not a.skip_desta:
        t0 = time.time()
        run_all(profile, str(out / "data"), overwrite=True)
        timings["train_desta"] = round(time.time() - t0, 1)
        log(f"desta: {timings['train_desta']} s")
    desta = json.loads((out / "data" / "en" / "train" / "metrics.json").read_text())
    if a.skip_desta:
        timings["train_desta (earlier run, its timings_s)"] = desta["timings_s"]
    grass = None
    if not a.skip_grass:
        from pipeline.train.grass.convert import hf_dir_for_ct2
        from pipeline.train.grass.entry import run_grass

        t0 = time.time()
        wdir = hf_dir_for_ct2(WHISPER)
        timings["whisper_convert"] = round(time.time() - t0, 1)
        conversion = check_conversion(wdir)
        timings["whisper_check"] = round(time.time() - t0 - timings["whisper_convert"], 1)
        log(f"whisper conversion check: {conversion['summary']}")
        t0 = time.time()
        run_grass(profile, str(out / "data"), whisper=WHISPER, overwrite=True, grass=GRASS | {"max_steps": a.grass_steps})
        timings["train_grass"] = round(time.time() - t0, 1)
        grass = json.loads((out / "data" / "en" / "train" / "grass" / "metrics.json").read_text())
        grass["conversion_check"] = conversion
        log(f"grass: {timings['train_grass']} s")
    t0 = time.time()
    desta["linear_probe"] = linear_probe(profile, out / "data")
    timings["linear_probe"] = round(time.time() - t0, 1)
    log(f"linear probe: {desta['linear_probe']}")
    timings["total"] = round(time.time() - t_all, 1)
    res = train_results.write(Path(a.results), corpus, dataset, desta, grass, timings,
                              " ".join(sys.argv), load_avg=os.getloadavg())
    log(f"results: {res}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
