"""Near-duplicate removal: datasketch MinHash LSH over character shingles."""
from pipeline.quality.dedup import near_duplicates


def test_minhash_lsh_near_duplicates_name_the_kept_twin():
    texts = [
        "A calm woman says the museum opens at nine in the morning and closes at six on weekdays.",
        "A woman explains that the train to the coast leaves from platform four in twenty minutes.",
        "A calm woman says the museum opens at nine in the morning, and closes at six on weekdays!",
        "A calm woman says that the museum opens at nine in the morning and closes at six on weekdays.",
        "Someone talks about planting tomatoes, beans and sunflowers in the garden.",
    ]
    dup = near_duplicates(texts, threshold=0.8, num_perm=128)
    assert dup == {2: 0, 3: 0}
    # the order decides which twin is kept
    assert near_duplicates(texts[::-1], threshold=0.8, num_perm=128) == {2: 1, 4: 1}
    assert near_duplicates(texts, threshold=0.95, num_perm=128) == {2: 0}  # only punctuation differs: same shingles
