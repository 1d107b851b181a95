"""Dataset-wide near-duplicate removal across shards, in the staged form datatrove uses (issue 20).

1. **signatures** per shard: MinHash (``export.dedup_num_perm`` permutations) of character 5-gram shingles of
   each generated instruction (prompt + response; not the label-task rows, whose
   template text repeats over different audio by design) and each transcript (``asr_text``, else the reference text;
   shorter than ``export.dedup_transcript_min_chars`` never counts), with LSH band hashes. Written to
   ``_work/dedup/<kind>/sig-*.parquet`` and reused while the shard's work part is unchanged (an incremental
   run computes only its new shards).
2. **buckets**: per band, rows whose band hashes are equal are candidates (sorted arrays, no pair lists).
3. **clusters**: a candidate pair is linked when the signatures agree on at least ``export.dedup_threshold`` of
   the permutations (estimated Jaccard; transcripts also need durations within ``export.dedup_same_duration_s``:
   a re-upload, not another speaker reading the same sentence); union-find; each cluster keeps its first row
   in dataset order (shard, then row), so rows kept by an earlier run stay kept when files are added.
4. **filter**: export leaves the other members out of the final tables; each goes to rejects (stage ``dedup``,
   reason ``dataset_duplicate``) naming its kept twin, and so do the instructions of a dropped utterance
   (reason ``duplicate_utterance``), so the accounting still covers every input file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.core import store
from pipeline.core.config import LLMConfig
from pipeline.core.text import normalize

SHINGLE = 5
SHINGLE_MULT = np.random.RandomState(5).randint(1, 1 << 62, SHINGLE, dtype=np.uint64) | np.uint64(1)
SIG_VERSION = "v4"
TEXT_GROUP = 1 << 62  # order key of text-corpus shards (after every audio shard)
# template rows of the label tasks (pipeline.stages.llm.label_tasks): their text repeats by design, their audio differs
LABEL_TASKS = frozenset(get_args(get_args(LLMConfig.model_fields["label_tasks"].annotation)[0]))


def order_key(k: int, row: int, text: bool = False) -> int:
    return (TEXT_GROUP if text else 0) | (k << 24) | row


def bands_for(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising false positives + negatives at ``threshold`` (datasketch's choice)."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(threshold, num_perm, 0.5, 0.5)


@dataclass
class Hasher:
    num_perm: int
    bands: int
    rows: int
    seed: int = 1
    a: np.ndarray = field(init=False)
    b: np.ndarray = field(init=False)
    mult: np.ndarray = field(init=False)

    def __post_init__(self):
        rng = np.random.RandomState(self.seed)
        self.a = rng.randint(1, 1 << 62, self.num_perm, dtype=np.uint64) | np.uint64(1)  # odd: multiply-shift
        self.b = rng.randint(0, 1 << 62, self.num_perm, dtype=np.uint64)
        self.mult = rng.randint(1, 1 << 62, self.rows, dtype=np.uint64) | np.uint64(1)

    def signature(self, text: str) -> np.ndarray:
        """MinHash of the text's character 5-gram shingles (hashed vectorised: code points x odd constants)."""
        cp = np.frombuffer(normalize(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        if len(cp) < SHINGLE:
            cp = np.concatenate([cp, np.zeros(SHINGLE - len(cp), np.uint64)])
        with np.errstate(over="ignore"):
            hv = (np.lib.stride_tricks.sliding_window_view(cp, SHINGLE) * SHINGLE_MULT).sum(axis=1) >> np.uint64(16)
            phv = (hv[:, None] * self.a + self.b) >> np.uint64(32)
        return phv.min(axis=0).astype(np.uint32)

    def signatures(self, texts: list[str]) -> np.ndarray:
        """(N, num_perm) MinHash signatures of many texts in one vectorised pass (same values as ``signature``:
        a repeated shingle does not change a minimum, so no per-text unique is needed)."""
        if not texts:
            return np.zeros((0, self.num_perm), np.uint32)
        norm = [normalize(t).ljust(SHINGLE, "\0") for t in texts]
        lens = np.array([len(t) for t in norm], dtype=np.int64)
        cp = np.frombuffer("".join(norm).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        with np.errstate(over="ignore"):
            hv_all = (np.lib.stride_tricks.sliding_window_view(cp, SHINGLE) * SHINGLE_MULT).sum(axis=1) >> np.uint64(16)
        n_w = lens - SHINGLE + 1  # windows inside each text
        starts, wstarts = np.r_[0, np.cumsum(lens)[:-1]], np.r_[0, np.cumsum(n_w)[:-1]]
        hv = hv_all[np.arange(n_w.sum()) + np.repeat(starts - wstarts, n_w)]
        out = np.empty((len(texts), self.num_perm), np.uint32)
        block = 1024
        for a in range(0, len(texts), block):
            b = min(a + block, len(texts))
            lo, hi = wstarts[a], (wstarts[b] if b < len(texts) else len(hv))
            with np.errstate(over="ignore"):
                phv = (hv[lo:hi, None] * self.a + self.b) >> np.uint64(32)  # multiply-shift hashing
            out[a:b] = np.minimum.reduceat(phv, wstarts[a:b] - lo, axis=0).astype(np.uint32)
        return out

    def band_hashes(self, sigs: np.ndarray) -> np.ndarray:
        """(N, bands) int64 hashes of the signature bands."""
        x = sigs[:, : self.bands * self.rows].astype(np.uint64).reshape(len(sigs), self.bands, self.rows)
        with np.errstate(over="ignore"):
            return (x * self.mult).sum(axis=2).view(np.int64)


SIG_SCHEMA = pa.schema([("id", pa.string()), ("utterance_id", pa.string()), ("order", pa.int64()),
                        ("source_path", pa.string()), ("duration_s", pa.float64()), ("sig", pa.binary()),
                        ("bands", pa.binary())])


def _fp(paths: list[Path]) -> str:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
        except FileNotFoundError:
            out.append(f"{p.name}:-")
    return "|".join(out)


def _signatures(path: Path, inputs: list[Path], docs, hasher: Hasher) -> pa.Table:
    """Stage 1 for one shard: the cached signature table, or computed from ``docs()`` and written."""
    fp = f"{_fp(inputs)}#{SIG_VERSION}:{hasher.num_perm}/{hasher.bands}x{hasher.rows}"
    if path.exists():
        try:
            t = pq.read_table(path)
            if (t.schema.metadata or {}).get(b"fp", b"").decode() == fp:
                return t
        except (OSError, pa.ArrowException):
            pass
    rows = list(docs())
    sigs = hasher.signatures([r["text"] for r in rows])
    bands = hasher.band_hashes(sigs) if rows else np.zeros((0, hasher.bands), np.int64)
    t = pa.Table.from_pylist([{"id": r["id"], "utterance_id": r.get("utterance_id"), "order": r["order"],
                               "source_path": r.get("source_path"), "duration_s": r.get("duration_s"),
                               "sig": sigs[i].tobytes(), "bands": bands[i].tobytes()} for i, r in enumerate(rows)],
                             schema=SIG_SCHEMA).replace_schema_metadata({"fp": fp})
    store.write_atomic(t, path)
    return t


def _clusters(t: pa.Table, hasher: Hasher, threshold: float, max_dur_diff: float | None) -> dict[int, int]:
    """Stages 2 + 3: row index -> row index of its cluster's kept row (only for rows that are dropped)."""
    n = t.num_rows
    if n < 2:
        return {}
    order = t.column("order").to_numpy()
    sigs = np.frombuffer(b"".join(t.column("sig").to_pylist()), dtype=np.uint32).reshape(n, hasher.num_perm)
    bands = np.frombuffer(b"".join(t.column("bands").to_pylist()), dtype=np.int64).reshape(n, hasher.bands)
    dur = np.array([np.nan if d is None else d for d in t.column("duration_s").to_pylist()], dtype=np.float64)
    parent = np.arange(n)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_order = np.argsort(order, kind="stable")
    for b in range(hasher.bands):
        idx = by_order[np.argsort(bands[by_order, b], kind="stable")]  # equal hashes together, in dataset order
        h = bands[idx, b]
        starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
        ends = np.r_[starts[1:], len(h)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            first = idx[s]
            for j in idx[s + 1:e]:
                if find(j) == find(first):
                    continue
                if (sigs[j] == sigs[first]).mean() < threshold:
                    continue
                if max_dur_diff is not None and not (abs(dur[j] - dur[first]) <= max_dur_diff):
                    continue
                rj, rf = find(j), find(first)
                keep, drop = (rj, rf) if order[rj] < order[rf] else (rf, rj)
                parent[drop] = keep
    out = {}
    for i in range(n):
        r = find(i)
        if r != i:
            out[i] = r
    return out


@dataclass
class Drops:
    """What export leaves out: ids per (table, job key) and the rejects rows that say why."""

    by_job: dict[tuple[str, object], set[str]] = field(default_factory=dict)
    rejects: list[dict] = field(default_factory=list)
    digest: str = "none"

    def filter(self, table: str, job, t: pa.Table) -> pa.Table:
        ids = self.by_job.get((table, job))
        if not ids or not t.num_rows:
            return t
        import pyarrow.compute as pc

        return t.filter(pc.invert(pc.is_in(t.column("id"), value_set=pa.array(sorted(ids), pa.string()))))


def find(run, last_utterances: str | None, instruction_stages: list[str], text_stages: list[str]) -> Drops:
    """Run stages 1-3 over the run's work shards and return the drops (stage 4 is ``Drops.filter`` in export)."""
    cfg = run.profile.export
    if not cfg.dedup:
        return Drops()
    bands, rows = bands_for(cfg.dedup_threshold, cfg.dedup_num_perm)
    hasher = Hasher(cfg.dedup_num_perm, bands, rows)
    sig_dir = run.work / "dedup"
    n, m = run.plan.n_shards, run.plan.n_tts_shards
    drops = Drops()

    # ---- transcripts ----
    utt_tables, utt_info = [], {}
    if cfg.dedup_transcripts and last_utterances:
        for k in range(n):
            p = run.part(last_utterances, k)
            if not p.exists():
                continue

            def docs(p=p, k=k):
                names = pq.read_schema(p).names
                cols = [c for c in ("id", "asr_text", "reference_text", "duration_s", "source_path") if c in names]
                for i, r in enumerate(store.read(p, columns=cols).to_pylist()):
                    text = (r.get("asr_text") or r.get("reference_text") or "").strip()
                    if len(normalize(text)) >= cfg.dedup_transcript_min_chars:
                        yield {**r, "text": text, "order": order_key(k, i)}

            utt_tables.append(_signatures(sig_dir / "transcripts" / f"sig-{k:05d}.parquet", [p], docs, hasher))
    ut = pa.concat_tables(utt_tables) if utt_tables else SIG_SCHEMA.empty_table()
    dropped_utts: dict[str, str] = {}
    for i, r in _clusters(ut, hasher, cfg.dedup_threshold, cfg.dedup_same_duration_s).items():
        uid, kid = ut.column("id")[i].as_py(), ut.column("id")[r].as_py()
        k = int(ut.column("order")[i].as_py()) >> 24
        dropped_utts[uid] = kid
        drops.by_job.setdefault(("utterances", k), set()).add(uid)
        utt_info[uid] = k
        drops.rejects.append({"id": uid, "stage": "dedup", "reason": "dataset_duplicate", "source_path": ut.column("source_path")[i].as_py(),
                              "detail": f"transcript is a near duplicate of utterance {kid} (MinHash Jaccard >= {cfg.dedup_threshold}"
                                        + (f", durations within {cfg.dedup_same_duration_s} s" if cfg.dedup_same_duration_s is not None else "") + ")"})

    # ---- generated instructions ----
    inst_tables = []
    jobs = [(k, False, [run.part(s, k) for s in instruction_stages]) for k in range(n)]
    jobs += [(j, True, [run.part(s, j) for s in text_stages]) for j in range(m)]
    for k, text, parts in jobs:
        parts = [p for p in parts if p.exists()]
        if not parts:
            continue

        def docs(parts=parts, k=k, text=text):
            paths = {}
            if not text and last_utterances and run.part(last_utterances, k).exists():
                u = store.read(run.part(last_utterances, k), columns=["id", "source_path"]).to_pylist()
                paths = {r["id"]: r["source_path"] for r in u}
            i = 0
            for p in parts:
                names = pq.read_schema(p).names
                cols = [c for c in ("id", "utterance_id", "prompt", "response", "task") if c in names]
                for r in store.read(p, columns=cols).to_pylist():
                    if r.get("task") in LABEL_TASKS:
                        continue  # a label row is a template over its own audio: the same words on other audio are no duplicate
                    yield {"id": r["id"], "utterance_id": r["utterance_id"], "order": order_key(k, i, text),
                           "source_path": run.profile.tts.input if text else paths.get(r["utterance_id"]),
                           "text": f"{r['prompt'] or ''}\n{r['response'] or ''}"}
                    i += 1

        name = f"sig-{'t' if text else 's'}{k:05d}.parquet"
        inst_tables.append(_signatures(sig_dir / "instructions" / name, parts, docs, hasher))
    it = pa.concat_tables(inst_tables) if inst_tables else SIG_SCHEMA.empty_table()
    clusters = _clusters(it, hasher, cfg.dedup_threshold, None)
    ids, uids, orders, paths = (it.column(c).to_pylist() for c in ("id", "utterance_id", "order", "source_path"))
    for i in range(it.num_rows):
        job = ("t", (orders[i] ^ TEXT_GROUP) >> 24) if orders[i] & TEXT_GROUP else orders[i] >> 24
        if uids[i] in dropped_utts:
            reason, detail = "duplicate_utterance", f"its utterance {uids[i]} is a near duplicate of utterance {dropped_utts[uids[i]]}"
        elif i in clusters:
            reason, detail = "dataset_duplicate", (f"near duplicate of {ids[clusters[i]]} (prompt + response, MinHash "
                                                   f"Jaccard >= {cfg.dedup_threshold}, across the whole dataset)")
        else:
            continue
        drops.by_job.setdefault(("instructions", job), set()).add(ids[i])
        drops.rejects.append({"id": ids[i], "stage": "dedup", "reason": reason, "detail": detail, "source_path": paths[i]})
    drops.rejects.sort(key=lambda r: r["id"])
    import hashlib

    drops.digest = hashlib.sha256(json.dumps(drops.rejects, sort_keys=True).encode()).hexdigest()[:16]
    summary = {"transcripts": ut.num_rows, "instructions": it.num_rows, "dropped": len(drops.rejects),
               "bands": bands, "rows_per_band": rows}
    tmp = sig_dir / f".summary.json.tmp-{os.getpid()}"
    sig_dir.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(summary))
    tmp.replace(sig_dir / "summary.json")
    return drops
