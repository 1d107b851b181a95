"""Training examples from the exported shards and their split by speaker / source file / text id.

``build_examples`` turns the utterances and instructions tables into :class:`Example` rows (ASR and label
tasks derived from the utterances, the instruction rows as they are); ``split_groups`` puts whole groups,
never single rows, into train/val/test.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.audio import SAMPLE_RATE, resample
from pipeline.core.config import TrainConfig
from pipeline.core.rows import AUDIO_TOKEN, manifest_labels
from pipeline.core.text import normalize
from pipeline.train.common import SPLITS, TrainError


@dataclass
class Example:
    id: str
    task: str  # description | qa | tts_instruction | asr | label:<name>
    group: str  # split unit: speaker:<x> | source:<source_id> | text:<text id>
    audio_key: str  # feature cache key (sha1 of the audio bytes + encoder)
    user: str  # user message with AUDIO_TOKEN where the audio goes
    response: str  # training target
    reference: str  # what the output is scored against
    transcript: str | None = None  # ASR text for the "ASR transcript" baseline
    choices: list[str] | None = None  # label tasks
    meta: dict = field(default_factory=dict)
    split: str = ""
    # scoring: generate (ROUGE-L) | asr (WER) | label (closed question, most likely choice) |
    # label_text (free answer of a label instruction row, mapped to a class by synonyms)
    kind: str = "generate"


def answer_class(text: str, choices: list[str], synonyms: dict[str, list[str]]) -> str | None:
    """The class a free answer names first ("It is a woman's voice." -> female), or None."""
    words = {c: c for c in choices}
    for c, ws in synonyms.items():
        words.update({w.lower(): c for w in ws})
    for w in normalize(text).split():
        w = w.removesuffix("'s")
        if w in words:
            return words[w]
    return None


def read_table(data_dir: Path, table: str):
    """Read one table's shards the way training code does: datasets' parquet builder (audio kept as bytes)."""
    from datasets import Audio, load_dataset

    files = sorted((data_dir / table).glob("part-*.parquet"))
    if not files:
        return []
    ds = load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if "audio" in ds.column_names:
        ds = ds.cast_column("audio", Audio(decode=False))
    return ds


def decode_audio(audio: dict, max_s: float) -> np.ndarray:
    """A row's audio bytes -> mono float32 at SAMPLE_RATE, cut at ``max_s`` seconds."""
    import soundfile as sf

    x, sr = sf.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
    x = resample(x.mean(axis=1), sr, SAMPLE_RATE)
    return x[: int(max_s * SAMPLE_RATE)]


def audio_key(audio_bytes: bytes, encoder: str) -> str:
    """Feature cache key of a clip for one encoder."""
    return hashlib.sha1(encoder.encode() + b"\0" + audio_bytes).hexdigest()[:20]


def encoder_tag(cfg: TrainConfig) -> str:
    """What the cached encoder outputs depend on: the encoder and its window."""
    return cfg.encoder + (f"@window{cfg.encoder_window_s:g}s" if cfg.encoder_window_s else "")


def _label_value(u: dict, fieldname: str | None) -> str | None:
    if not fieldname:
        return None
    if fieldname.startswith("labels."):
        v = manifest_labels(u).get(fieldname[len("labels."):])
    else:
        v = u.get(fieldname)
    return str(v).strip().lower() if v not in (None, "") else None


def build_examples(data_dir: Path, cfg: TrainConfig) -> tuple[list[Example], dict[str, dict]]:
    """All examples of the dataset (instructions rows + tasks derived from utterances) and the audio
    of each feature key ({key: {"audio": {...}, "duration_s": ...}})."""
    utts = read_table(data_dir, "utterances")
    inst = read_table(data_dir, "instructions")
    if not len(utts) and not len(inst):
        raise TrainError(f"no shards under {data_dir}/utterances or {data_dir}/instructions: build the dataset first "
                         f"(make dataset LANG=...)")
    audio: dict[str, dict] = {}
    examples: list[Example] = []
    by_utt: dict[str, tuple[str, str, dict]] = {}  # utterance id -> (group, audio key, row)
    inst_tasks = {(r["utterance_id"], r["task"]) for r in inst if r.get("utterance_id")}  # rows of the tasks stage win
    label_tasks = {lt.name: lt for lt in cfg.label_tasks}
    for u in utts:
        key = audio_key(u["audio"]["bytes"], encoder_tag(cfg))
        audio[key] = {"audio": u["audio"], "duration_s": float(u["duration_s"])}
        if cfg.split_by == "speaker" and u.get("speaker"):
            group = f"speaker:{u['speaker']}"
        else:
            group = f"source:{u['source_id']}"
        by_utt[u["id"]] = (group, key, u)
        transcript = u.get("asr_text") or None
        if "asr" in cfg.tasks and (u["id"], "asr") not in inst_tasks and (u.get("reference_text") or u.get("asr_text")):
            ref, src = (u["reference_text"], "reference") if u.get("reference_text") else (u["asr_text"], "asr")
            examples.append(Example(f"{u['id']}-asr", "asr", group, key, f"{AUDIO_TOKEN}\n{cfg.asr_prompt}", ref, ref,
                                    transcript, meta={"reference_source": src}, kind="asr"))
        if "labels" in cfg.tasks:
            for lt in cfg.label_tasks:
                if not lt.field or ((u["id"], lt.name) in inst_tasks and lt.name in cfg.tasks):
                    continue  # the llm stage's templated row of this task is used instead
                value, src = _label_value(u, lt.field), lt.field
                if value is None:
                    value, src = _label_value(u, lt.fallback_field), lt.fallback_field
                choices = [c.lower() for c in lt.choices] if lt.choices else None
                if value is None or (choices and value not in choices):
                    continue
                examples.append(Example(f"{u['id']}-label-{lt.name}", f"label:{lt.name}", group, key,
                                        f"{AUDIO_TOKEN}\n{lt.prompt}", value, value, transcript, choices,
                                        meta={"label_source": src}, kind="label"))
    for r in inst:
        if r["task"] not in cfg.tasks:
            continue
        user = r["messages"][0]["content"] if r.get("messages") else f"{AUDIO_TOKEN}\n{r['prompt']}"
        if AUDIO_TOKEN not in user:
            user = f"{AUDIO_TOKEN}\n{user}"
        if r.get("utterance_id"):
            if r["utterance_id"] not in by_utt:
                continue  # utterance filtered out of the table: no audio group to put it in
            group, key, u = by_utt[r["utterance_id"]]
            transcript = u.get("asr_text") or None
        else:  # synthesized speech (TTS): split unit is the text id
            key = audio_key(r["audio"]["bytes"], encoder_tag(cfg))
            settings = json.loads(r.get("tts_settings_json") or "{}")
            audio[key] = {"audio": r["audio"], "duration_s": None}
            text_id = re.sub(rf"-{re.escape(r['task'])}-\d+$", "", r["id"])
            group = f"text:{text_id}"
            transcript = settings.get("gate_asr_text")
            if "asr" in cfg.tasks and settings.get("spoken_text"):
                examples.append(Example(f"{r['id']}-asr", "asr", group, key, f"{AUDIO_TOKEN}\n{cfg.asr_prompt}",
                                        settings["spoken_text"], settings["spoken_text"], transcript,
                                        meta={"reference_source": "tts_text"}, kind="asr"))
        meta = {"text_source": r.get("text_source"), "label_source": r.get("label_source")}
        if r["task"] in label_tasks:  # e.g. gender rows of the tasks stage: accuracy of the named class
            lt = label_tasks[r["task"]]
            choices = [c.lower() for c in lt.choices] if lt.choices else sorted(lt.synonyms)
            cls = answer_class(r["response"], choices, lt.synonyms)
            examples.append(Example(r["id"], r["task"], group, key, user, r["response"], cls or "", transcript, choices,
                                    meta=meta, kind="label_text" if cls else "generate"))
            continue
        examples.append(Example(r["id"], r["task"], group, key, user, r["response"], r["response"], transcript,
                                meta=meta, kind="asr" if r["task"] == "asr" else "generate"))
    seen: dict[str, set] = {}
    for e in examples:
        if e.kind == "label":
            seen.setdefault(e.task, set()).add(e.reference)
    for e in examples:
        if e.kind == "label" and e.choices is None:
            e.choices = sorted(seen[e.task])
    examples.sort(key=lambda e: e.id)
    return examples, audio


def split_groups(examples: list[Example], cfg: TrainConfig) -> dict[str, str]:
    """Assign whole groups (speaker / source file / text id) to train/val/test, never single rows.

    Stratified by group: speech groups by the majority value of the first label task (e.g. the
    speaker's gender), TTS text groups on their own, so every split sees every class when a stratum
    has >= 3 groups. Within a stratum, groups are visited in a seeded hash order and each goes to
    the split furthest below its target share of rows (ties: train, test, val)."""
    sizes: dict[str, int] = {}
    votes: dict[str, dict[str, int]] = {}
    first = cfg.label_tasks[0].name if cfg.label_tasks else None
    for e in examples:
        sizes[e.group] = sizes.get(e.group, 0) + 1
        if first and e.task in (f"label:{first}", first) and e.kind in ("label", "label_text"):
            v = votes.setdefault(e.group, {})
            v[e.reference] = v.get(e.reference, 0) + 1
    def stratum(g: str) -> str:
        if g.startswith("text:"):
            return "text"
        v = votes.get(g)
        return "label:" + max(sorted(v), key=v.get) if v else "none"
    targets = {"train": 1.0 - cfg.test_fraction - cfg.val_fraction, "test": cfg.test_fraction, "val": cfg.val_fraction}
    out: dict[str, str] = {}
    strata: dict[str, list[str]] = {}
    for g in sizes:
        strata.setdefault(stratum(g), []).append(g)
    for name in sorted(strata):
        groups = sorted(strata[name], key=lambda g: hashlib.sha1(f"{cfg.seed}:{g}".encode()).hexdigest())
        total = sum(sizes[g] for g in groups)
        have = dict.fromkeys(SPLITS, 0)
        for g in groups:
            cands = [s for s in ("train", "test", "val") if targets[s] > 0]
            s = max(cands, key=lambda s: (targets[s] * total - have[s]) / (targets[s] * total))
            out[g] = s
            have[s] += sizes[g]
    return out


def check_no_overlap(examples: list[Example]) -> dict:
    """Speakers, source files, audio clips and text ids shared by two splits (all must be empty)."""
    seen: dict[str, dict[str, set]] = {k: {} for k in ("group", "audio")}
    for e in examples:
        seen["group"].setdefault(e.group, set()).add(e.split)
        seen["audio"].setdefault(e.audio_key, set()).add(e.split)
    return {k: sorted(x for x, s in v.items() if len(s) > 1) for k, v in seen.items()}


def other_group_index(exs: list[Example], i: int) -> int:
    """Index of the next example (cyclic) from another group; i + 1 when all share one group
    (the clip of the shuffled-audio control)."""
    n = len(exs)
    for k in range(1, n):
        if exs[(i + k) % n].group != exs[i].group:
            return (i + k) % n
    return (i + 1) % n
