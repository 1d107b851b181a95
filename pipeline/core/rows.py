"""What every stage reads off an utterance row: manifest labels, gender, chat messages, stable seeds.

One place for the conventions that several stages and the train flow share:
- ``labels_json`` holds the labels a person gave in the manifest; they win over any estimate.
- ``AUDIO_TOKEN`` marks where the audio goes in a chat message (DeSTA2 / Qwen-Audio convention).
- ``stable_seed`` derives a per-row seed from the profile seed and the row's identity, so reruns
  give the same rows whatever the shard order.
"""
from __future__ import annotations

import hashlib
import json

AUDIO_TOKEN = "<|AUDIO|>"

#: Reference F0 (Hz) by gender group: the centre of the pitch labels in seeds and of the reference bins.
PITCH_CENTRE_HZ = {"male": 120.0, "female": 210.0, "other": 165.0}


def manifest_labels(row: dict) -> dict:
    """The manifest labels of a row (``labels_json``), ``{}`` when absent or malformed."""
    try:
        d = json.loads(row.get("labels_json") or "{}")
    except (TypeError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def gender_of(row: dict) -> str | None:
    """Speaker gender: a manifest label (labels_json.gender, given by a person) over the estimate."""
    g = manifest_labels(row).get("gender")
    g = g if isinstance(g, str) and g.lower() in ("male", "female") else row.get("gender")
    return g.lower() if g else None


def stable_seed(base: int, *parts: str) -> int:
    return (int(hashlib.sha1("|".join(parts).encode()).hexdigest()[:8], 16) ^ base) & 0x7FFFFFFF


def messages(prompt: str, response: str) -> list[dict]:
    """A two-turn chat: the user turn carries the audio token, then the prompt."""
    return [{"role": "user", "content": f"{AUDIO_TOKEN}\n{prompt}"}, {"role": "assistant", "content": response}]


def transcript_of(row: dict) -> tuple[str, str]:
    """(grounding text, text_source): the reference transcript when there is one, else the ASR pseudo-label."""
    if (row.get("reference_text") or "").strip():
        return row["reference_text"].strip(), "reference"
    return (row.get("asr_text") or "").strip(), "asr"


def reject(rid: str, row: dict, stage: str, reason: str, detail: str, raw: str | None = None) -> dict:
    """A rejects-table row for an item made from utterance ``row``."""
    return {"id": rid, "stage": stage, "reason": reason, "detail": detail, "source_path": row.get("source_path"),
            "start_s": row.get("start_s"), "end_s": row.get("end_s"), "raw": raw}
