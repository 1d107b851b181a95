#!/usr/bin/env python3
"""Per-language numbers of finished dataset folders (issue 16):

    python scripts/language_report.py data/de data/ja ...   [--json out.json]
    python scripts/language_report.py --run de fr --n-qa 1 --out /tmp/langs   # build each language's sample first

For each folder (written by ``make dataset LANG=xx``), with xx read from its ``_manifest.json``:
- ``asr_language_share``: of the utterances in the profile language (by the manifest's ``labels.lang``) that
  reached the ASR stage (kept, or rejected there), the share not detected as another language (kept rows by
  ``asr_language``; ``language_mismatch`` rejects count as other languages, other ASR rejects as the profile's);
- ``asr_error``: corpus WER, or CER for ja/zh/..., of the kept utterances against the manifest reference;
- ``generated_in_language``: share of LLM-generated rows (description, qa) whose response py3langid places in
  the profile language (p >= 0 : its top guess), and the same over every instruction row's response;
- ``rows``: rows per table, and instruction rows per task.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _read(folder: Path, table: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for f in sorted((folder / table).glob("part-*.parquet")):
        cols = [c for c in pq.read_schema(f).names if c != "audio"]
        rows += pq.read_table(f, columns=cols).to_pylist()
    return rows


def report(folder: Path) -> dict:
    import jiwer

    from pipeline.core.text import base_language, error_metric, normalize
    from pipeline.quality.text_rules import detect_language

    manifest = json.loads((folder / "_manifest.json").read_text())
    lang = base_language(manifest["language"])
    utt, ins, rej = _read(folder, "utterances"), _read(folder, "instructions"), _read(folder, "rejects")
    # clips the manifest labels as another language (the sample corpora's English clip) are not counted
    other = set()
    src = ROOT / manifest["input"] if manifest.get("input") and not Path(manifest["input"]).is_absolute() else Path(manifest.get("input") or "")
    if src.suffix == ".jsonl" and src.is_file():
        for line in src.read_text().splitlines():
            r = json.loads(line)
            if (r.get("labels") or {}).get("lang") not in (None, lang):
                other.add(r["path"])
    utt = [u for u in utt if u.get("source_path") not in other]
    asr_rej = [r for r in rej if r.get("stage") == "asr" and r.get("source_path") not in other]
    mismatch = sum(r["reason"] == "language_mismatch" for r in asr_rej)
    detected = Counter(base_language(u.get("asr_language")) for u in utt)
    reached = len(utt) + len(asr_rej)
    # rejected at ASR for another reason (low confidence ...): the reject keeps no language, counted as the profile's
    same = detected.get(lang, 0) + sum(r["reason"] != "language_mismatch" for r in asr_rej)
    metric = error_metric(lang)
    pairs = [(u["reference_text"], u.get("asr_text") or "") for u in utt if (u.get("reference_text") or "").strip()]
    if metric == "cer":
        refs = ["".join(normalize(r).split()) for r, _ in pairs]
        hyps = ["".join(normalize(h).split()) or "<empty>" for _, h in pairs]
        err = float(jiwer.cer(refs, hyps)) if refs else None
    else:
        refs = [normalize(r) for r, _ in pairs]
        hyps = [normalize(h) or "<empty>" for _, h in pairs]
        err = float(jiwer.wer(refs, hyps)) if refs else None

    def share(rows):
        langs = [detect_language(r["response"])[0] for r in rows if (r.get("response") or "").strip()]
        return {"rows": len(langs), "in_language": sum(x == lang for x in langs),
                "share": round(sum(x == lang for x in langs) / len(langs), 3) if langs else None,
                "other": dict(Counter(x for x in langs if x != lang).most_common(5))}

    gen = [r for r in ins if r["task"] in ("description", "qa")]
    # every LLM candidate: the kept rows and the llm-stage rejects that kept the model's raw text (the answer
    # of a QA reject is inside its JSON; py3langid reads the whole of it)
    cands = gen + [{"response": r["raw"]} for r in rej if r.get("stage") == "llm" and (r.get("raw") or "").strip()]
    return {
        "folder": str(folder), "language": lang,
        "asr_language_share": {"reached_asr": reached, "profile_language": same, "language_mismatch": mismatch,
                               "share": round(same / reached, 3) if reached else None,
                               "detected_on_kept": dict(detected)},
        "asr_error": {"metric": metric, "value": round(err, 3) if err is not None else None, "utterances": len(pairs)},
        "generated_in_language": share(gen), "llm_candidates_in_language": share(cands),
        "all_instructions_in_language": share(ins),
        "rows": {t: v["rows"] for t, v in manifest["tables"].items()},
        "instructions_per_task": dict(Counter(r["task"] for r in ins)),
        "rejects_per_reason": dict(Counter(f"{r['stage']}:{r['reason']}" for r in rej)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*", type=Path)
    ap.add_argument("--run", nargs="*", default=[], metavar="LANG",
                    help="first build these profiles' sample datasets in-process (python -m pipeline dataset --no-prefect)")
    ap.add_argument("--n-qa", type=int, default=None, help="with --run: QA pairs per utterance (the LLM stage is slow on CPU)")
    ap.add_argument("--out", type=Path, default=Path("data"), help="with --run: output root")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    folders = list(a.folders)
    for lang in a.run:
        from pipeline.cli import run_direct
        from pipeline.core.config import load_profile

        over = {"llm.n_qa": a.n_qa} if a.n_qa is not None else {}
        t0 = time.time()
        run_direct(load_profile(lang, **over), str(a.out), overwrite=True, report=False)
        print(f"{lang}: built in {time.time() - t0:.0f} s", flush=True)
        folders.append(a.out / lang)
    out = [report(f) for f in folders]
    for r in out:
        s, e, g = r["asr_language_share"], r["asr_error"], r["generated_in_language"]
        print(f"{r['language']}: ASR language {s['profile_language']}/{s['reached_asr']} ({s['share']}); "
              f"{e['metric'].upper()} {e['value']} on {e['utterances']}; generated in {r['language']}: "
              f"{g['in_language']}/{g['rows']} ({g['share']}), other {g['other']}; all LLM candidates in {r['language']}: "
              f"{r['llm_candidates_in_language']['in_language']}/{r['llm_candidates_in_language']['rows']}; rows {r['rows']}; "
              f"tasks {r['instructions_per_task']}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
