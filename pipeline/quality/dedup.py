"""Near-duplicate removal within a shard: MinHash LSH (datasketch) over character 5-gram shingles.

Of a group of near twins the first given (the caller puts the best judged first) is kept; the others
map to the kept twin's index."""
from __future__ import annotations

from pipeline.core.text import normalize


def shingles(text: str, k: int = 5) -> set[bytes]:
    t = normalize(text)
    if len(t) <= k:
        return {t.encode()}
    return {t[i:i + k].encode() for i in range(len(t) - k + 1)}


def near_duplicates(texts: list[str], threshold: float = 0.8, num_perm: int = 64, seed: int = 1) -> dict[int, int]:
    """Indices of near duplicates -> index of the kept twin. ``texts`` are visited in the order given
    (put the best first): a text is dropped when the LSH finds an already kept text whose estimated
    Jaccard similarity is at least ``threshold``."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    kept: dict[str, MinHash] = {}
    dropped: dict[int, int] = {}
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch(list(shingles(text)))
        twins = [int(k) for k in lsh.query(m) if kept[k].jaccard(m) >= threshold]
        if twins:
            dropped[i] = min(twins)
            continue
        lsh.insert(str(i), m)
        kept[str(i)] = m
    return dropped
