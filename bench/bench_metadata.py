"""Accuracy and speed of the metadata estimators (pipeline.stages.metadata.MetadataEstimator and the
backends in pipeline.backends.metadata) on synthetic known-truth audio.

    python bench/bench_metadata.py                 # all voices x 6 sentences (~1 min on 2 cores)
    python bench/bench_metadata.py --sentences 2   # quicker
    python bench/bench_metadata.py --pyin          # also time/score the librosa.pyin backend
    python bench/bench_metadata.py --only rate,speakers,dnsmos   # just the newer sections

    python bench/bench_metadata.py --only f0,hard  # the hard known-truth set (tests/fixtures_metadata/hardset.py):
                                                   # F0 trackers compared; gender accuracy/abstention per voice/SNR

Sections: f0 (trackers on the hard set), hard (gender + SNR on the hard set; --fit refits the fusion weights on its
dev half), snr, pitch, gender, loudness, speed (acoustic estimators), rate (speaking rate on espeak-ng
at -s 120/170/220), speakers (Resemblyzer count on concatenations of 1/2/3 voices), dnsmos
(batched DNSMOS vs speechmos, speed).

Truth: white Gaussian noise mixed at a known SNR (speech power over the speech-active 20 ms frames,
after trimming TTS padding); pure and harmonic tones at known F0; BS.1770 value of a 1 kHz sine
(0 dBFS-peak sine = -3.01 LUFS); speaker gender of the synthetic voices (Piper joe and espeak
en-us/+mN are male, espeak +fN and the named female variants are female).
Speed is measured single-threaded (OMP/BLAS threads = 1): CPU-seconds of one process (x realtime on one
core) and wall-clock throughput of one and of two worker processes (the machine has 2 cores).
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core.config import MetadataConfig  # noqa: E402
from pipeline.backends.metadata.loudness import integrated_loudness  # noqa: E402
from pipeline.backends.metadata.snr_wada import wada_snr  # noqa: E402
from pipeline.stages.metadata import MetadataEstimator  # noqa: E402
from tests.fixtures_metadata import synth as S  # noqa: E402

SR = S.SR
SNRS = (0, 5, 10, 15, 20)


def family(voice: str) -> str:
    if voice == "piper":
        return "piper-joe (male)"
    return "espeak female" if voice in S.ESPEAK_FEMALE else "espeak male"


def bench_snr(clips) -> None:
    print("\n== SNR (WADA) : estimate - truth, white noise, truth on speech-active frames ==")
    print(f"{'family':18s} {'clean read':>11s} " + " ".join(f"{'@' + str(s) + 'dB bias/MAE/max':>20s}" for s in SNRS))
    errs = defaultdict(lambda: defaultdict(list))
    clean = defaultdict(list)
    for n, (v, _, i, a) in enumerate(clips):
        fam = family(v)
        clean[fam].append(wada_snr(a))
        for s in SNRS:
            y = S.add_white_noise(a, s, seed=1000 + n)
            e = wada_snr(y) - s
            errs[fam][s].append(e)
            errs["ALL"][s].append(e)
    for fam in [*sorted(clean), "ALL"]:
        c = f"{np.min(clean[fam]):5.0f}/{np.median(clean[fam]):5.0f}" if fam in clean else " " * 11
        cells = []
        for s in SNRS:
            e = np.asarray(errs[fam][s])
            cells.append(f"{e.mean():+6.1f}/{np.abs(e).mean():4.1f}/{np.abs(e).max():4.1f}".rjust(20))
        print(f"{fam:18s} {c} " + " ".join(cells))
    print("('clean read' = min/median WADA estimate of the un-noised TTS (100 = table top): Piper and some espeak"
          " female variants carry synthetic noise, so their true SNR after mixing is below the nominal value)")
    e_all = np.concatenate([np.asarray(errs["ALL"][s]) for s in (5, 10, 20)])
    print(f"SNR mean abs error over all clips at 5/10/20 dB: {np.abs(e_all).mean():.2f} dB")


def bench_pitch(est: MetadataEstimator, clips, pyin: bool) -> None:
    from pipeline.backends.metadata.pitch import pitch_pyin, pitch_yin

    fmin, fmax = est.cfg.pitch_fmin, est.cfg.pitch_fmax
    print("\n== Pitch: tones at known F0 (2 s; sine / 8-harmonic complex; clean, 10 dB and 5 dB white noise) ==")
    backends = [("yin", pitch_yin)] + ([("pyin", pitch_pyin)] if pyin else [])
    for name, fn in backends:
        errs = []
        for f0 in (65, 80, 100, 150, 220, 300, 380):
            for h in (1, 8):
                for snr in (None, 10, 5):
                    x = S.tone(f0, 2.0, h)
                    if snr is not None:
                        x = S.add_white_noise(x, snr, seed=f0 + h, active_only=False)
                    f = fn(x, SR, fmin, fmax)
                    errs.append(abs(np.mean(f) - f0) / f0 * 100 if f.size else np.inf)
        errs = np.asarray(errs)
        print(f"  {name:5s}: mean |error| {errs.mean():.3f} %, max {errs.max():.3f} % over {errs.size} tones")

    print("\n== Pitch on speech (no truth for TTS contours: voice means, YIN vs pyin agreement, noise robustness) ==")
    means = defaultdict(list)
    yin_f, pyin_f, noisy_f = [], [], []
    for n, (v, _, _, a) in enumerate(clips):
        f = pitch_yin(a, SR, fmin, fmax)
        means[family(v)].append(np.mean(f))
        yin_f.append((np.mean(f), np.std(f)))
        g = pitch_yin(S.add_white_noise(a, 10, seed=n), SR, fmin, fmax)
        noisy_f.append((np.mean(g), np.std(g)) if g.size else (np.nan, np.nan))
        if pyin:
            p = pitch_pyin(a, SR, fmin, fmax)
            pyin_f.append((np.mean(p), np.std(p)))
    for fam, m in sorted(means.items()):
        print(f"  {fam:18s} mean F0 over clips: median {np.median(m):6.1f} Hz, range {np.min(m):6.1f}..{np.max(m):6.1f}")
    y = np.asarray(yin_f)
    nz = np.asarray(noisy_f)
    d = (nz[:, 0] - y[:, 0]) / y[:, 0] * 100
    print(f"  YIN mean F0, +10 dB white noise vs clean: mean |diff| {np.nanmean(np.abs(d)):.2f} %, "
          f"max {np.nanmax(np.abs(d)):.2f} %, no-pitch {int(np.isnan(d).sum())}/{d.size}")
    if pyin:
        p = np.asarray(pyin_f)
        d = (y[:, 0] - p[:, 0]) / p[:, 0] * 100
        ds = y[:, 1] - p[:, 1]
        print(f"  YIN vs pyin mean F0: mean |diff| {np.abs(d).mean():.2f} %, max {np.abs(d).max():.2f} %;"
              f" std F0 diff: mean {ds.mean():+.2f} Hz, mean |diff| {np.abs(ds).mean():.2f} Hz")


def bench_gender(est: MetadataEstimator, clips) -> None:
    print("\n== Gender (voice2gender): accuracy per voice, clean and with white noise ==")
    conds = [None, 10, 5, 0]
    per_voice = defaultdict(lambda: defaultdict(list))
    for n, (v, g, _, a) in enumerate(clips):
        for c in conds:
            x = a if c is None else S.add_white_noise(a, c, seed=2000 + n)
            r = est.estimate_batch([x], SR)[0]
            per_voice[v][c].append(r["gender"] == g)
    hdr = " ".join(f"{('clean' if c is None else f'{c}dB'):>7s}" for c in conds)
    print(f"  {'voice':16s} {hdr}")
    tot = defaultdict(list)
    for v, d in per_voice.items():
        print(f"  {v:16s} " + " ".join(f"{sum(d[c])}/{len(d[c])}".rjust(7) for c in conds))
        for c in conds:
            tot[(family(v), c)] += d[c]
            tot[("ALL", c)] += d[c]
    for fam in ["piper-joe (male)", "espeak male", "espeak female", "ALL"]:
        print(f"  {fam:16s} " + " ".join(f"{100 * np.mean(tot[(fam, c)]):6.1f}%" for c in conds))


def bench_f0_hard(n_texts: int, trackers: list[str], pitches=(None, 30, 70)) -> None:
    """F0 errors per frame against the smooth-twin truth (tests/fixtures_metadata/hardset.py) on every hard-set
    espeak-ng variant, at espeak-ng's default pitch and -p 30 / -p 70, clean and at 10 / 5 / 0 dB."""
    import importlib.util

    from tests.fixtures_metadata import hardset as H

    items = H.espeak_items(n_texts=n_texts, pitches=pitches)
    truths = [H.f0_truth(it["smooth"]) for it in items]
    print(f"\n== F0 on the hard set: {len(items)} espeak-ng clips ({len(H.ESPEAK_VARIANTS)} variants x {len(pitches)} "
          f"pitches x {n_texts} texts), truth = smooth twin; per-frame gross (>20 %) / octave / missed voiced frames ==")
    print(f"  {'tracker':16s} " + " ".join(f"{('clean' if s is None else f'{s} dB') + ' gross/oct/miss':>24s}" for s in H.SNRS)
          + "   x realtime  worst variants (gross %, clean+noisy)")
    for name in trackers:
        fn, mod = H.TRACKERS[name]
        if importlib.util.find_spec(mod) is None:
            print(f"  {name:16s} (not installed: {mod})")
            continue
        agg = defaultdict(lambda: defaultdict(int))
        per = defaultdict(lambda: defaultdict(int))
        cpu, dur = 0.0, 0.0
        for n, (it, tr) in enumerate(zip(items, truths)):
            for snr in H.SNRS:
                x = it["audio"] if snr is None else S.add_white_noise(it["audio"], snr, seed=31 * n + snr)
                t0 = time.process_time()
                e = fn(x)
                cpu += time.process_time() - t0
                dur += x.size / SR
                for k, v in H.f0_errors(e, tr).items():
                    agg[snr][k] += v
                    per[it["voice"].split("+p")[0]][k] += v
        cells = [f"{100 * a['gross'] / max(a['frames'], 1):6.2f}/{100 * a['octave'] / max(a['frames'], 1):5.2f}/"
                 f"{100 * a['missed'] / max(a['truth_frames'], 1):5.1f}".rjust(24) for a in (agg[s] for s in H.SNRS)]
        tot = {k: sum(agg[s][k] for s in H.SNRS) for k in ("gross", "frames", "octave")}
        worst = sorted(((100 * v["gross"] / max(v["frames"], 1), k.split(":")[1]) for k, v in per.items()), reverse=True)[:3]
        print(f"  {name:16s} " + " ".join(cells) + f"   {dur / max(cpu, 1e-9):7.0f}x   "
              + ", ".join(f"{k} {g:.1f}" for g, k in worst)
              + f"   | all: gross {100 * tot['gross'] / max(tot['frames'], 1):.2f} % of {tot['frames']} frames")


def bench_gender_hard(n_texts: int, fit: bool) -> None:
    """Gender on the hard set (tests/fixtures_metadata/hardset.py): every voice clean and at 10 / 5 / 0 dB, the
    default estimator (evidence fusion + abstention) vs the raw classifier; dev / check halves of the voices."""
    import json as _json

    from tests.fixtures_metadata import hardset as H

    t = time.perf_counter()
    items = H.espeak_items(n_texts=n_texts) + H.piper_items(n_texts) + H.human_items()
    try:
        items += H.kokoro_items(n_texts)
    except Exception as e:  # noqa: BLE001 - report, keep going
        print(f"  (kokoro voices skipped: {type(e).__name__}: {e})")
    items = H.with_noise(items)
    print(f"\n== Gender on the hard set: {len(items)} clips, {len({i['voice'] for i in items})} voices, synthesised in "
          f"{time.perf_counter() - t:.0f} s ==")
    cfg = MetadataConfig(speakers_backend="none")
    est = MetadataEstimator(cfg)
    rows = []
    for k in range(0, len(items), 16):
        batch = items[k: k + 16]
        for it, r in zip(batch, est.estimate_batch([b["audio"] for b in batch], SR)):
            ev = _json.loads(r["gender_evidence"]) if r.get("gender_evidence") else {}
            rows.append({"voice": it["voice"], "family": it["family"], "truth": it["gender"], "snr": it["snr"],
                         "split": H.split(it["voice"]), "gender": r["gender"], "p_female": ev.get("p_female"),
                         "p_cls": ev.get("classifier_p_female"), "llr": ev.get("f0_llr_female"),
                         "f0": ev.get("f0_median_hz"), "snr_est": r["snr_db"]})
    if fit:
        _fit_fusion(rows, cfg)

    def summary(sel) -> str:
        ans = [r for r in sel if r["gender"] is not None]
        right = sum(r["gender"] == r["truth"] for r in ans)
        raw = [r for r in sel if r["p_cls"] is not None]
        raw_ok = sum((r["p_cls"] >= 0.5) == (r["truth"] == "female") for r in raw)
        return (f"{100 * right / max(len(ans), 1):5.1f}% of {len(ans):3d} answered, abstained "
                f"{100 * (len(sel) - len(ans)) / max(len(sel), 1):4.1f}% | classifier alone {100 * raw_ok / max(len(raw), 1):5.1f}%")

    print(f"  {'voice':28s} {'truth':6s} " + " ".join(f"{('clean' if s is None else f'{s}dB'):>9s}" for s in H.SNRS))
    for v in dict.fromkeys(r["voice"] for r in rows):
        sel = [r for r in rows if r["voice"] == v]
        cells = []
        for s in H.SNRS:
            c = [r for r in sel if r["snr"] == s]
            ok = sum(r["gender"] == r["truth"] for r in c)
            ab = sum(r["gender"] is None for r in c)
            cells.append(f"{ok}/{len(c)}" + (f" a{ab}" if ab else "   "))
        print(f"  {v:28s} {sel[0]['truth']:6s} " + " ".join(f"{c:>9s}" for c in cells) + f"  [{H.split(v)}]")
    for s in H.SNRS:
        print(f"  SNR {('clean' if s is None else f'{s} dB'):6s}: " + summary([r for r in rows if r["snr"] == s]))
    for fam in ("espeak", "kokoro", "piper", "human"):
        print(f"  {fam:10s}: " + summary([r for r in rows if r["family"] == fam]))
    for sp in ("dev", "check"):
        print(f"  split {sp:5s}: " + summary([r for r in rows if r["split"] == sp]))
    print(f"  ALL        : " + summary(rows))
    # calibration: answered and all clips, P(truth) binned
    ps = np.asarray([r["p_female"] for r in rows if r["p_female"] is not None])
    ys = np.asarray([r["truth"] == "female" for r in rows if r["p_female"] is not None], dtype=float)
    if ps.size:
        conf = np.maximum(ps, 1 - ps)
        hit = (ps >= 0.5) == (ys == 1)
        bins = np.clip(((conf - 0.5) / 0.5 * 5).astype(int), 0, 4)
        ece = sum(abs(hit[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean() for b in range(5) if (bins == b).any())
        print(f"  calibration: Brier {np.mean((ps - ys) ** 2):.3f}, ECE {ece:.3f} (5 bins of the label probability)")
    sn = [(r["snr_est"], r["snr"]) for r in rows if r["snr"] is not None and r["snr_est"] is not None]
    print(f"  SNR MAE on these noisy clips: {np.mean([abs(a - b) for a, b in sn]):.2f} dB over {len(sn)} clips")


def _fit_fusion(rows, cfg) -> None:
    """Logistic regression of the truth on (clipped classifier logit, F0 LLR) over the dev half; prints weights."""
    from scipy.optimize import minimize

    def feats(r):
        zc = 0.0 if r["p_cls"] is None else float(np.clip(np.log(max(r["p_cls"], 1e-9) / max(1 - r["p_cls"], 1e-9)),
                                                        -cfg.gender_classifier_max_logit, cfg.gender_classifier_max_logit))
        return [zc, 0.0 if r["llr"] is None else r["llr"], 1.0]

    dev = [r for r in rows if r["split"] == "dev"]
    X = np.asarray([feats(r) for r in dev])
    y = np.asarray([r["truth"] == "female" for r in dev], dtype=float)

    def nll(w):
        z = X @ w
        return float(np.sum(np.logaddexp(0, z) - y * z) + 0.01 * np.sum(w[:2] ** 2))

    w = minimize(nll, np.array([1.0, 1.0, 0.0]), method="L-BFGS-B").x
    print(f"  fit on {len(dev)} dev clips: gender_w_classifier {w[0]:.3f}, gender_w_f0 {w[1]:.3f}, gender_bias {w[2]:.3f}"
          f" (profile now: {cfg.gender_w_classifier}, {cfg.gender_w_f0}, {cfg.gender_bias})")


def bench_loudness() -> None:
    print("\n== Loudness (pyloudnorm BS.1770): 1 kHz sine, expected -3.01 + 20 log10(peak) LUFS ==")
    t = np.arange(int(3 * SR)) / SR
    for peak in (1.0, 0.5, 0.1):
        x = peak * np.sin(2 * np.pi * 1000 * t)
        exp = -3.0103 + 20 * np.log10(peak)
        got = integrated_loudness(x, SR)
        short = integrated_loudness(x[: int(0.2 * SR)], SR)
        print(f"  peak {peak:4.2f}: expected {exp:7.2f}, got {got:7.2f} (0.2 s clip: {short:7.2f})")


def _worker(args):
    audios, backend = args
    est = MetadataEstimator(MetadataConfig(pitch_backend=backend, speakers_backend="none"))
    est.estimate_batch(audios[:1], SR)  # warm-up
    t = time.perf_counter()
    est.estimate_batch(audios, SR)
    return time.perf_counter() - t


def bench_speed(est: MetadataEstimator, clips, pyin: bool) -> None:
    audios = [a for *_, a in clips]
    dur = sum(a.size for a in audios) / SR
    print(f"\n== Speed: {len(audios)} utterances, {dur:.0f} s of 16 kHz audio "
          f"(mean {dur / len(audios):.1f} s), single-threaded ==")
    e = est.estimators
    parts = [("loudness", lambda a: e["loudness"].estimate(a, SR)), ("snr", lambda a: e["snr"].estimate(a, SR)),
             ("pitch-yin", lambda a: e["pitch"].estimate(a, SR)), ("gender features", lambda a: e["gender"].features(a, SR))]
    for name, fn in parts:
        c = time.process_time()
        for a in audios:
            try:
                fn(a)
            except ValueError:
                pass
        cpu = time.process_time() - c
        print(f"  {name:16s} {dur / cpu:8.0f}x realtime (CPU time, one core)")
    c, t = time.process_time(), time.perf_counter()
    est.estimate_batch(audios, SR)
    cpu, wall = time.process_time() - c, time.perf_counter() - t
    print(f"  estimate_batch   {dur / cpu:8.0f}x realtime, {len(audios) / cpu:6.1f} utt/s per core (CPU time); "
          f"wall {dur / wall:.0f}x realtime")
    backends = ["yin"] + (["pyin"] if pyin else [])
    ctx = mp.get_context("spawn")
    for backend in backends:
        with ctx.Pool(2) as pool:
            halves = [audios[0::2], audios[1::2]]
            t = time.perf_counter()
            walls = pool.map(_worker, [(h, backend) for h in halves])
            span = max(walls)
        print(f"  2 workers ({backend:4s}): {dur / span:6.0f}x realtime, {len(audios) / span:6.1f} utt/s wall "
              f"(per worker {', '.join(f'{w:.2f}s' for w in walls)})")


RATE_VOICES = ("en-us", "en-us+m3", "en-us+f3", "en-us+Annie")
RATES_WPM = (120, 170, 220)


def _espeak_at(text: str, voice: str, wpm: int) -> np.ndarray:
    import subprocess
    import tempfile

    import soundfile as sf

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", out, text], check=True, capture_output=True)
        a, sr = sf.read(out, dtype="float32")
    return S._resample(a, sr)


def bench_rate(n_sentences: int) -> None:
    from pipeline.backends.metadata.speech_span import speech_span
    from pipeline.backends.metadata.text import speaking_rate

    texts = [s.rstrip("?.!").replace(",", "") for s in S.SENTENCES[:n_sentences]]
    print(f"\n== Speaking rate: espeak-ng -s 120/170/220 wpm, {len(RATE_VOICES)} voices x {len(texts)} sentences; "
          "span = first..last speech frame ==")
    ratio, order_ok, n, pps_by = [], 0, 0, defaultdict(list)
    c = time.process_time()
    for v in RATE_VOICES:
        for t in texts:
            w = []
            for wpm in RATES_WPM:
                r = speaking_rate(t, speech_span(_espeak_at(t, v, wpm), SR))
                w.append(r["speaking_rate_wps"])
                ratio.append(r["speaking_rate_wps"] / (wpm / 60))
                pps_by[wpm].append(r["speaking_rate_pps"])
            order_ok += bool(np.all(np.diff(w) > 0))
            n += 1
    ratio = np.asarray(ratio)
    print(f"  measured words/s / (wpm/60): mean {ratio.mean():.3f}, min {ratio.min():.3f}, max {ratio.max():.3f} "
          f"(espeak's wpm is nominal; the factor is constant: linear response)")
    print(f"  120 < 170 < 220 ordering right on {order_ok}/{n} sentence x voice triples")
    for wpm in RATES_WPM:
        p = np.asarray(pps_by[wpm])
        print(f"  -s {wpm}: phonemes/s median {np.median(p):5.2f} (range {p.min():5.2f}..{p.max():5.2f})")
    print(f"  (synthesis + span + phonemizer, CPU {time.process_time() - c:.1f} s)")


SPEAKER_POOLS = {"distinct": ["piper", "en-us", "en-us+f3", "piper-x1.25"],
                 "espeak variants (hard)": ["en-us", "en-us+m7", "en-us+f1", "en-gb-x-rp+f2"]}


def bench_speakers() -> None:
    import itertools

    import librosa

    from pipeline.backends.metadata.resemblyzer import ResemblyzerSpeakers

    print("\n== Number of speakers (Resemblyzer GE2E + AHC @0.70): concatenations of 1/2/3 voices, "
          "2 sentences each; singles also at 15 and 5 dB white noise ==")
    spk = ResemblyzerSpeakers()
    voices = sorted({v for p in SPEAKER_POOLS.values() for v in p})
    clips = {}
    for v in voices:
        if v == "piper-x1.25":  # Piper joe played 1.25x faster: pitch and formants up (another voice)
            clips[v] = [librosa.resample(a, orig_sr=SR, target_sr=int(SR / 1.25)) for a in clips["piper"]]
        else:
            clips[v] = [S.trim(S.piper(t) if v == "piper" else S.espeak(t, v)) for t in S.SENTENCES]
    gap = np.zeros(SR // 4, np.float32)
    for name, pool in SPEAKER_POOLS.items():
        cases = []
        for n in (1, 2, 3):
            for k, combo in enumerate(itertools.permutations(pool, n)):
                parts = [x for j, v in enumerate(combo) for x in (clips[v][(k + 2 * j) % 6], gap, clips[v][(k + 2 * j + 1) % 6], gap)]
                cases.append((n, None, np.concatenate(parts)))
        for v in pool:
            for snr in (15, 5):
                a = np.concatenate([x for i in range(4) for x in (clips[v][i], gap)])
                cases.append((1, snr, S.add_white_noise(a, snr, seed=snr)))
        dur = sum(a.size for *_, a in cases) / SR
        c = time.process_time()
        got = [r["n_speakers"] for r in spk.predict_batch([a for *_, a in cases], SR)]
        cpu = time.process_time() - c
        print(f"  {name} ({', '.join(pool)}): {dur:.0f} s audio, {dur / cpu:.0f}x realtime (CPU, 1 thread)")
        for n in (1, 2, 3):
            for noisy in (False, True):
                sel = [g for (m, snr, _), g in zip(cases, got) if m == n and (snr is not None) == noisy]
                if sel:
                    sel = np.asarray(sel)
                    print(f"    {n} voice(s){' +noise' if noisy else '       '}: {np.mean(sel == n) * 100:5.1f} % exact, "
                          f"{np.mean(sel > n) * 100:4.1f} % over, {np.mean(sel < n) * 100:4.1f} % under (n={sel.size})")


def bench_dnsmos(clips) -> None:
    from speechmos import dnsmos

    from pipeline.backends.metadata.dnsmos import DNSMOS

    audios = [np.clip(a, -1.0, 1.0) for *_, a in clips[:12]]  # speechmos (the reference) refuses overshoot
    dur = sum(a.size for a in audios) / SR
    d = DNSMOS(batch_size=16)
    c = time.process_time()
    rows = d.predict_batch(audios, SR)
    cpu = time.process_time() - c
    win = sum(len(d.windows(a)) for a in audios)
    print(f"\n== DNSMOS (batched, 1 thread): {len(audios)} clips, {dur:.0f} s audio, {win} windows of 9.01 s: "
          f"{cpu:.1f} s CPU = {dur / cpu:.2f}x realtime ({cpu / win:.2f} s per window; short clips are tiled to 9 s)")
    err = max(abs(r["dnsmos_ovrl"] - float(dnsmos.run(a, SR)["ovrl_mos"])) for a, r in zip(audios[:3], rows[:3]))
    print(f"  max |OVRL - speechmos.dnsmos.run| over 3 clips: {err:.2e}")
    clean, noisy = rows[0], d.predict_batch([S.add_white_noise(audios[0], 5, seed=1)], SR)[0]
    print(f"  clip 1 clean SIG/BAK/OVRL {clean['dnsmos_sig']:.2f}/{clean['dnsmos_bak']:.2f}/{clean['dnsmos_ovrl']:.2f}, "
          f"at 5 dB {noisy['dnsmos_sig']:.2f}/{noisy['dnsmos_bak']:.2f}/{noisy['dnsmos_ovrl']:.2f}")


def bench_full_speed(clips) -> None:
    audios = [a for *_, a in clips]
    dur = sum(a.size for a in audios) / SR
    est = MetadataEstimator(MetadataConfig())
    est.estimate_batch(audios[:2], SR)
    c = time.process_time()
    est.estimate_batch(audios, SR, texts=[S.SENTENCES[i] for _, _, i, _ in clips])
    cpu = time.process_time() - c
    print(f"\n== Default configuration (acoustic + speakers + text): {dur:.0f} s audio, {dur / cpu:.0f}x realtime "
          f"(CPU time, one process, torch 1 thread)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=len(S.SENTENCES))
    ap.add_argument("--pyin", action="store_true", help="also evaluate the librosa.pyin backend (slow)")
    ap.add_argument("--only", default="", help="comma-separated sections (default: all)")
    ap.add_argument("--hard-texts", type=int, default=2, help="sentences per voice in the hard set (f0, hard)")
    ap.add_argument("--trackers", default="praat,yin,pyin,swift-f0,torchcrepe-tiny,pesto",
                    help="F0 trackers compared in the f0 section (those not installed are listed as such)")
    ap.add_argument("--fit", action="store_true", help="hard: refit the gender fusion weights on the dev half")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    want = lambda s: not only or s in only  # noqa: E731
    if want("f0"):
        bench_f0_hard(args.hard_texts, args.trackers.split(","))
    if want("hard"):
        bench_gender_hard(args.hard_texts, args.fit)
    if only and only <= {"f0", "hard"}:
        return
    t = time.perf_counter()
    if only and only <= {"rate", "speakers", "dnsmos"}:  # these need few or no clips
        clips = S.speech_set(["piper", "en-us", "en-us+f3"], n_sentences=4) if "dnsmos" in only else []
    else:
        clips = S.speech_set(n_sentences=args.sentences)
    print(f"synthesised {len(clips)} clips ({len({c[0] for c in clips})} voices) in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    est = MetadataEstimator(MetadataConfig(speakers_backend="none"))
    print(f"MetadataEstimator() in {time.perf_counter() - t:.1f} s")
    if want("snr"):
        bench_snr(clips)
    if want("pitch"):
        bench_pitch(est, clips, args.pyin)
    if want("gender"):
        bench_gender(est, clips)
    if want("loudness"):
        bench_loudness()
    if want("speed"):
        bench_speed(est, clips, args.pyin)
        bench_full_speed(clips)
    if want("rate"):
        bench_rate(args.sentences)
    if want("speakers"):
        bench_speakers()
    if want("dnsmos"):
        bench_dnsmos(clips)


if __name__ == "__main__":
    main()
