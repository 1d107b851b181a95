"""Train and score a small DeSTA2-style speech LM on the produced shards.

Architecture (DeSTA2): a frozen Whisper encoder -> a trainable modality adapter (frame-stacking MLP
projector, or a small Q-Former) -> a frozen LLM (LoRA optional). Audio embeddings replace the
``<|AUDIO|>`` placeholder of the chat messages; the loss is on the response tokens only.

- Embedded default (2 CPU cores, minutes): Whisper base encoder in CTranslate2 (the ASR stage's
  weights; frozen, so its outputs are computed once per audio clip and cached) and SmolLM2-135M
  dequantised from its GGUF into PyTorch by transformers.
- Production (same code, GPU): a hub Whisper (``openai/whisper-large-v3``) through transformers'
  ``WhisperModel`` encoder and a 7-8B instruct LLM (``TrainConfig.llm``), ``device: cuda``,
  ``dtype: bfloat16``, optionally LoRA and gradient checkpointing.

Steps (each is a task of the Prefect flow ``train`` in flows/train.py; ``run_all`` runs them in-process):

    prepare    read the Parquet shards (datasets.load_dataset), build examples, split by speaker /
               source file (TTS rows by text id) -> split.json
    features   frozen encoder outputs per audio clip -> features/ (cache, keyed by audio + encoder)
    fit        train the adapter; checkpoints (trainable weights only) every N steps; resumable
    evaluate   held-out test split: model vs "no audio" and "ASR transcript as text" baselines
    report     metrics.json, predictions.jsonl, report.md, loss.png

Everything lands in ``<output_dir>/<lang>/train/``. The GRASS variant (fine-tune a Whisper decoder on the
same examples and split; ``--variant grass``) is pipeline/train_grass.py and writes ``train/grass/``.
"""
from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared CPU box, spinning threads of a 2-thread
# torch burn 5x the CPU time of the real work (measured here). Effective only before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import io
import json
import math
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import Profile, TrainConfig, load_profile
from .models import EMBEDDED_PREFIX, cache_dir, resolve
from .textnorm import normalize

AUDIO_TOKEN = "<|AUDIO|>"
SAMPLE_RATE = 16000
FRAME_HZ = 50  # Whisper encoder frames per second
MAX_TARGET_TOKENS = 160  # training targets are cut here (bounds step time on CPU)
SPLITS = ("train", "val", "test")
# what must match for a checkpoint to be resumed: the architecture (the data is checked by data_digest:
# example ids, texts, audio and split); max_steps, lr, eval settings ... may change between runs
RESUME_KEYS = ("encoder", "llm", "adapter", "pool", "adapter_hidden", "qformer_queries", "qformer_layers", "lora_rank",
               "lora_alpha", "lora_targets")


class TrainError(RuntimeError):
    pass


# ==== data ==========================================================================================
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


def _read_table(data_dir: Path, table: str):
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
    import soundfile as sf

    x, sr = sf.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        import soxr

        x = soxr.resample(x, sr, SAMPLE_RATE).astype(np.float32)
    return x[: int(max_s * SAMPLE_RATE)]


def _audio_key(audio_bytes: bytes, encoder: str) -> str:
    return hashlib.sha1(encoder.encode() + b"\0" + audio_bytes).hexdigest()[:20]


def _label_value(u: dict, fieldname: str | None) -> str | None:
    if not fieldname:
        return None
    if fieldname.startswith("labels."):
        labels = json.loads(u.get("labels_json") or "{}")
        v = labels.get(fieldname[len("labels."):])
    else:
        v = u.get(fieldname)
    return str(v).strip().lower() if v not in (None, "") else None


def build_examples(data_dir: Path, cfg: TrainConfig) -> tuple[list[Example], dict[str, dict]]:
    """All examples of the dataset (instructions rows + tasks derived from utterances) and the audio
    of each feature key ({key: {"audio": {...}, "duration_s": ...}})."""
    utts = _read_table(data_dir, "utterances")
    inst = _read_table(data_dir, "instructions")
    if not len(utts) and not len(inst):
        raise TrainError(f"no shards under {data_dir}/utterances or {data_dir}/instructions: build the dataset first "
                         f"(make dataset LANG=...)")
    audio: dict[str, dict] = {}
    examples: list[Example] = []
    by_utt: dict[str, tuple[str, str, dict]] = {}  # utterance id -> (group, audio key, row)
    inst_tasks = {(r["utterance_id"], r["task"]) for r in inst if r.get("utterance_id")}  # rows of the tasks stage win
    label_tasks = {lt.name: lt for lt in cfg.label_tasks}
    for u in utts:
        key = _audio_key(u["audio"]["bytes"], cfg.encoder)
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
            key = _audio_key(r["audio"]["bytes"], cfg.encoder)
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


# ==== frozen encoders ================================================================================
class CT2WhisperEncoder:
    """Whisper encoder in CTranslate2 (the embedded default): faster-whisper features -> encoder output."""

    def __init__(self, ref: str, compute_type: str = "int8", threads: int = 2, device: str = "cpu"):
        from faster_whisper import WhisperModel

        self.wm = WhisperModel(resolve(ref), device=device, compute_type=compute_type, cpu_threads=threads)
        self.dim = None

    def encode(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        from faster_whisper.audio import pad_or_trim

        feats = np.stack([pad_or_trim(self.wm.feature_extractor(a)) for a in audios]).astype(np.float32)
        out = np.asarray(self.wm.encode(feats), dtype=np.float32)  # [B, 1500, D]
        return [o[: _n_frames(a)] for o, a in zip(out, audios)]


class HFWhisperEncoder:
    """Whisper encoder from transformers (production: a hub name or a local directory; frozen)."""

    def __init__(self, ref: str | None = None, device: str = "cpu", dtype: str = "float32", *, model=None, feature_extractor=None):
        import torch
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.torch, self.device = torch, device
        self.dtype = getattr(torch, dtype)
        self.fe = feature_extractor or WhisperFeatureExtractor.from_pretrained(ref)
        enc = model if model is not None else WhisperModel.from_pretrained(ref, dtype=self.dtype).get_encoder()
        self.enc = enc.to(device=device, dtype=self.dtype).eval().requires_grad_(False)

    def encode(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        x = self.fe(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with self.torch.no_grad():
            out = self.enc(x.to(self.device, self.dtype)).last_hidden_state.float().cpu().numpy()
        return [o[: _n_frames(a)] for o, a in zip(out, audios)]


def _n_frames(audio: np.ndarray) -> int:
    return max(1, min(1500, math.ceil(len(audio) / SAMPLE_RATE * FRAME_HZ)))


def load_encoder(cfg: TrainConfig):
    if cfg.encoder.startswith(EMBEDDED_PREFIX) or (Path(cfg.encoder).is_dir() and (Path(cfg.encoder) / "model.bin").exists()):
        return CT2WhisperEncoder(cfg.encoder, cfg.encoder_compute_type, cfg.threads, "cuda" if cfg.device.startswith("cuda") else "cpu")
    return HFWhisperEncoder(cfg.encoder, cfg.device, cfg.dtype)


# ==== LLM ==========================================================================================
def _hf_dir_for_gguf(ref: str) -> Path:
    """Dequantise an embedded GGUF once into a transformers directory (safetensors + tokenizer) next to
    the model cache; later loads take seconds instead of a minute."""
    gguf = Path(resolve(ref))
    out = cache_dir() / f"{ref[len(EMBEDDED_PREFIX):]}.hf"
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # the weights are plain float tensors now; drop the GGUF "quantizer" marker so the model saves as safetensors
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "ref": ref, "note": "dequantised by transformers"}))
    try:
        os.replace(tmp, out)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_llm(cfg: TrainConfig):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(_hf_dir_for_gguf(cfg.llm)) if cfg.llm.startswith(EMBEDDED_PREFIX) else cfg.llm
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, cfg.dtype)).to(cfg.device)
    model.eval().requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tok


# ==== trainable parts ===============================================================================
def _torch():
    import torch

    return torch


def build_adapter(cfg: TrainConfig, enc_dim: int, llm_dim: int, emb_std: float):
    torch = _torch()
    nn = torch.nn

    class MLPProjector(nn.Module):
        """Stack `pool` encoder frames into one token, then Linear-GELU-Linear-LayerNorm to the LLM width."""

        def __init__(self):
            super().__init__()
            self.pool = cfg.pool
            self.net = nn.Sequential(nn.Linear(enc_dim * cfg.pool, cfg.adapter_hidden), nn.GELU(),
                                     nn.Linear(cfg.adapter_hidden, llm_dim))
            self.norm = nn.LayerNorm(llm_dim)
            nn.init.constant_(self.norm.weight, emb_std)  # audio tokens start at the scale of text embeddings

        def forward(self, feats: list) -> list:
            lens = [math.ceil(f.shape[0] / self.pool) for f in feats]
            x = torch.zeros(len(feats), max(lens) * self.pool, enc_dim, device=feats[0].device)
            for i, f in enumerate(feats):
                x[i, : f.shape[0]] = f
            y = self.norm(self.net(x.reshape(len(feats), max(lens), self.pool * enc_dim)))
            return [y[i, :n] for i, n in enumerate(lens)]

    class QFormer(nn.Module):
        """Learned queries cross-attending to the encoder frames (BLIP-2 / DeSTA-style Q-Former, small)."""

        def __init__(self):
            super().__init__()
            d = cfg.adapter_hidden if cfg.adapter_hidden % 8 == 0 else 512
            self.inp = nn.Linear(enc_dim, d)
            self.queries = nn.Parameter(torch.randn(cfg.qformer_queries, d) * 0.02)
            layer = nn.TransformerDecoderLayer(d, nhead=8, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True)
            self.dec = nn.TransformerDecoder(layer, cfg.qformer_layers)
            self.out = nn.Linear(d, llm_dim)
            self.norm = nn.LayerNorm(llm_dim)
            nn.init.constant_(self.norm.weight, emb_std)

        def forward(self, feats: list) -> list:
            T = max(f.shape[0] for f in feats)
            mem = torch.zeros(len(feats), T, enc_dim, device=feats[0].device)
            pad = torch.ones(len(feats), T, dtype=torch.bool, device=feats[0].device)
            for i, f in enumerate(feats):
                mem[i, : f.shape[0]], pad[i, : f.shape[0]] = f, False
            q = self.queries.unsqueeze(0).expand(len(feats), -1, -1)
            y = self.norm(self.out(self.dec(q, self.inp(mem), memory_key_padding_mask=pad)))
            return list(y)

    return MLPProjector() if cfg.adapter == "mlp" else QFormer()


def add_lora(llm, cfg: TrainConfig) -> list:
    """Wrap the target Linear layers with LoRA (A, B trainable; base frozen). Returns the wrappers."""
    torch = _torch()
    nn = torch.nn

    class LoRALinear(nn.Module):
        def __init__(self, base: nn.Linear):
            super().__init__()
            self.base, self.enabled, self.scale = base, True, cfg.lora_alpha / cfg.lora_rank
            self.lora_A = nn.Parameter(torch.empty(cfg.lora_rank, base.in_features, device=base.weight.device))
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, cfg.lora_rank, device=base.weight.device))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

        def forward(self, x):
            y = self.base(x)
            if self.enabled:
                y = y + ((x.float() @ self.lora_A.t()) @ self.lora_B.t() * self.scale).to(y.dtype)
            return y

    wrapped = []
    for _, module in list(llm.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear) and name in cfg.lora_targets:
                w = LoRALinear(child)
                setattr(module, name, w)
                wrapped.append(w)
    if not wrapped:
        raise TrainError(f"lora_targets {cfg.lora_targets} match no Linear layer of {cfg.llm}")
    return wrapped


class SpeechLM:
    """Frozen LLM + trainable adapter (+ LoRA); builds chat inputs with audio embeddings in place of AUDIO_TOKEN."""

    def __init__(self, cfg: TrainConfig, enc_dim: int):
        torch = _torch()
        self.torch, self.cfg = torch, cfg
        self.llm, self.tok = load_llm(cfg)
        self.device = cfg.device
        emb = self.llm.get_input_embeddings()
        self.embed = emb
        emb_std = float(emb.weight.float().std())
        torch.manual_seed(cfg.seed)
        self.adapter = build_adapter(cfg, enc_dim, emb.weight.shape[1], emb_std).to(cfg.device)
        self.lora = add_lora(self.llm, cfg) if cfg.lora_rank > 0 else []
        self.eos_id = self.tok.eos_token_id
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id
        self._prompt_cache: dict[str, tuple[list[int], list[int]]] = {}
        self.initial_state = self.state()

    # -- parameters -------------------------------------------------------------------------------
    def trainable(self) -> dict:
        params = {f"adapter.{k}": p for k, p in self.adapter.named_parameters()}
        for i, w in enumerate(self.lora):
            params[f"lora.{i}.A"], params[f"lora.{i}.B"] = w.lora_A, w.lora_B
        return params

    def state(self) -> dict:
        return {k: v.detach().float().cpu().clone().contiguous() for k, v in self.trainable().items()}

    def load_state(self, sd: dict) -> None:
        params = self.trainable()
        if set(sd) != set(params):
            raise TrainError(f"checkpoint tensors {sorted(set(sd) ^ set(params))[:4]} do not match the model")
        with self.torch.no_grad():
            for k, p in params.items():
                p.copy_(sd[k].to(p.dtype))

    def set_lora(self, enabled: bool) -> None:
        for w in self.lora:
            w.enabled = enabled

    # -- inputs ------------------------------------------------------------------------------------
    def _prompt_ids(self, user: str) -> tuple[list[int], list[int]]:
        if user not in self._prompt_cache:
            text = self.tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False)
            before, _, after = text.partition(AUDIO_TOKEN)
            if AUDIO_TOKEN not in text:
                before, after = text, ""
            enc = lambda s: self.tok(s, add_special_tokens=False).input_ids if s else []
            self._prompt_cache[user] = (enc(before), enc(after))
        return self._prompt_cache[user]

    def _ids(self, ids: list[int]):
        return self.torch.tensor(ids, dtype=self.torch.long, device=self.device)

    def prefix(self, user: str, audio_emb=None):
        """Embeddings of the rendered chat prompt; audio_emb goes where AUDIO_TOKEN is (None: text only)."""
        if audio_emb is None:
            user = user.replace(AUDIO_TOKEN, "").strip()
        before, after = self._prompt_ids(user)
        parts = [self.embed(self._ids(before))]
        if audio_emb is not None:
            parts.append(audio_emb.to(parts[0].dtype))
        parts.append(self.embed(self._ids(after)))
        return self.torch.cat(parts)

    def target_ids(self, text: str, limit: int = MAX_TARGET_TOKENS) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids[:limit] + [self.eos_id]

    def audio_embeddings(self, feats: list[np.ndarray]) -> list:
        xs = [self.torch.from_numpy(np.asarray(f, dtype=np.float32)).to(self.device) for f in feats]
        return self.adapter(xs)

    def batch(self, prefixes: list, targets: list[list[int]]):
        """Right-padded inputs_embeds / attention_mask / labels (loss on targets only)."""
        torch = self.torch
        seqs, labels = [], []
        for p, t in zip(prefixes, targets):
            seqs.append(torch.cat([p, self.embed(self._ids(t))]))
            labels.append([-100] * p.shape[0] + t)
        n = max(s.shape[0] for s in seqs)
        d = seqs[0].shape[1]
        emb = torch.zeros(len(seqs), n, d, dtype=seqs[0].dtype, device=self.device)
        mask = torch.zeros(len(seqs), n, dtype=torch.long, device=self.device)
        lab = torch.full((len(seqs), n), -100, dtype=torch.long, device=self.device)
        for i, (s, l) in enumerate(zip(seqs, labels)):
            emb[i, : s.shape[0]], mask[i, : s.shape[0]] = s, 1
            lab[i, : len(l)] = torch.tensor(l, device=self.device)
        return emb, mask, lab

    def loss(self, examples: list[Example], feats: list[np.ndarray]):
        audio = self.audio_embeddings(feats)
        prefixes = [self.prefix(e.user, a) for e, a in zip(examples, audio)]
        emb, mask, lab = self.batch(prefixes, [self.target_ids(e.response) for e in examples])
        logits, targets = self.target_logits(emb, mask, lab)
        return self.torch.nn.functional.cross_entropy(logits.float(), targets)

    def target_logits(self, emb, mask, lab):
        """LM-head logits at the positions that predict a label only (the vocabulary projection of every
        prompt/audio position is most of the cost of a small LLM with a large vocabulary)."""
        base = getattr(self.llm, self.llm.base_model_prefix)
        h = base(inputs_embeds=emb, attention_mask=mask).last_hidden_state[:, :-1]
        tgt = lab[:, 1:]
        sel = tgt != -100
        return self.llm.get_output_embeddings()(h[sel]), tgt[sel]

    # -- inference ----------------------------------------------------------------------------------
    def generate(self, prefix, max_new_tokens: int) -> str:
        torch = self.torch
        with torch.no_grad():
            out = self.llm.generate(inputs_embeds=prefix.unsqueeze(0), attention_mask=torch.ones(1, prefix.shape[0], dtype=torch.long, device=self.device),
                                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, no_repeat_ngram_size=4,
                                    eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        return self.tok.decode(out[0], skip_special_tokens=True).strip()

    def choose(self, prefix, choices: list[str]) -> tuple[str, list[float]]:
        """Closed question: the choice with the highest log-likelihood (choice tokens + end of turn)."""
        torch = self.torch
        with torch.no_grad():
            targets = [self.target_ids(c) for c in choices]
            emb, mask, lab = self.batch([prefix] * len(choices), targets)
            logits, tgt = self.target_logits(emb, mask, lab)
            lp = torch.log_softmax(logits.float(), -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            scores = [float(x.sum()) for x in lp.split([len(t) for t in targets])]
        return choices[int(np.argmax(scores))], scores


# ==== run state =====================================================================================
class TrainRun:
    """Paths and shared state of one training run: <output_dir>/<lang>/train/."""

    def __init__(self, profile: Profile, output_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 overwrite: bool = False):
        self.profile, self.cfg = profile, profile.train
        root = Path(output_dir or profile.path(profile.output_dir)) / profile.language
        self.data_dir = Path(data_dir) if data_dir else root
        self.dir = root / "train"
        self.features_dir = self.dir / "features"
        self.ckpt_dir = self.dir / "checkpoints"
        if overwrite:  # features are a content-addressed cache: kept (with the time they took)
            t = self.dir / "timings.json"
            kept = {k: v for k, v in json.loads(t.read_text()).items() if k == "features"} if t.exists() else {}
            for p in (self.ckpt_dir, self.dir / "split.json", self.dir / "train_log.jsonl", self.dir / "metrics.json",
                      self.dir / "predictions.jsonl", self.dir / "report.md", self.dir / "loss.png", t):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            if kept:
                t.write_text(json.dumps(kept))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._examples: list[Example] | None = None
        self._audio: dict | None = None

    # -- examples and split ----------------------------------------------------------------------------
    def examples(self) -> list[Example]:
        if self._examples is None:
            ex, self._audio = build_examples(self.data_dir, self.cfg)
            assignment = split_groups(ex, self.cfg)
            for e in ex:
                e.split = assignment[e.group]
            self._examples = ex
        return self._examples

    def audio(self) -> dict:
        self.examples()
        return self._audio

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples() if e.split == name]

    def config_digest(self) -> str:
        d = {k: getattr(self.cfg, k) for k in RESUME_KEYS}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def data_digest(self) -> str:
        ids = [f"{e.id}:{e.split}:{e.audio_key}:{hashlib.sha1((e.user + chr(0) + e.response).encode()).hexdigest()[:12]}"
               for e in self.examples()]
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]

    def timing(self, step: str, seconds: float) -> None:
        p = self.dir / "timings.json"
        t = json.loads(p.read_text()) if p.exists() else {}
        t[step] = round(t.get(step, 0.0) + seconds, 2)
        _write_json(p, t)

    def timings(self) -> dict:
        p = self.dir / "timings.json"
        return json.loads(p.read_text()) if p.exists() else {}

    # -- feature cache --------------------------------------------------------------------------------
    def feature_path(self, key: str) -> Path:
        return self.features_dir / f"{key}.npy"

    def features(self, keys: list[str]) -> list[np.ndarray]:
        return [np.load(self.feature_path(k)) for k in keys]

    # -- checkpoints ----------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        return sorted(p for p in self.ckpt_dir.glob("step-*") if (p / "meta.json").exists())

    def last_checkpoint(self) -> Path | None:
        c = self.checkpoints()
        return c[-1] if c else None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False))
    tmp.replace(path)


def seed_everything(seed: int) -> None:
    torch = _torch()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


MODEL_KEYS = ("llm", "device", "dtype", "adapter", "pool", "adapter_hidden", "qformer_queries", "qformer_layers",
              "lora_rank", "lora_alpha", "lora_targets", "gradient_checkpointing", "seed")


@lru_cache(maxsize=2)
def _model(arch_json: str, enc_dim: int) -> SpeechLM:
    """One SpeechLM per process and architecture (fit and evaluate in one process share the loaded LLM)."""
    return SpeechLM(TrainConfig.model_validate_json(arch_json), enc_dim)


def speech_lm(tr: TrainRun) -> SpeechLM:
    """The model with freshly initialised (seeded) trainable weights; callers load a checkpoint over them."""
    torch = _torch()
    torch.set_num_threads(tr.cfg.threads)
    key = tr.examples()[0].audio_key
    enc_dim = int(np.load(tr.feature_path(key), mmap_mode="r").shape[1])
    model = _model(json.dumps({k: getattr(tr.cfg, k) for k in MODEL_KEYS}), enc_dim)
    model.load_state(model.initial_state)
    return model


# ==== steps ========================================================================================
def prepare(tr: TrainRun) -> dict:
    """Examples and their speaker/source/text split -> split.json (with the overlap check)."""
    ex = tr.examples()
    groups: dict[str, dict] = {}
    for e in ex:
        g = groups.setdefault(e.group, {"split": e.split, "examples": 0})
        g["examples"] += 1
    summary = {s: {"groups": sum(g["split"] == s for g in groups.values()), "examples": sum(e.split == s for e in ex),
                   "by_task": _count(e.task for e in ex if e.split == s)} for s in SPLITS}
    overlap = check_no_overlap(ex)
    out = {"split_by": tr.cfg.split_by, "seed": tr.cfg.seed, "data_dir": str(tr.data_dir), "data_digest": tr.data_digest(),
           "summary": summary, "overlap": overlap, "groups": groups,
           "examples": {e.id: e.split for e in ex}}
    _write_json(tr.dir / "split.json", out)
    if not tr.split("train"):
        raise TrainError("the split left no training examples (too few speakers/sources)")
    return {"examples": len(ex), **{s: summary[s]["examples"] for s in SPLITS}, "groups": len(groups)}


def _count(items) -> dict:
    d: dict[str, int] = {}
    for x in items:
        d[x] = d.get(x, 0) + 1
    return dict(sorted(d.items()))


def check_no_overlap(examples: list[Example]) -> dict:
    """Speakers, source files, audio clips and text ids shared by two splits (all must be empty)."""
    seen: dict[str, dict[str, set]] = {k: {} for k in ("group", "audio")}
    for e in examples:
        seen["group"].setdefault(e.group, set()).add(e.split)
        seen["audio"].setdefault(e.audio_key, set()).add(e.split)
    return {k: sorted(x for x, s in v.items() if len(s) > 1) for k, v in seen.items()}


def compute_features(tr: TrainRun, batch: int = 4) -> dict:
    """Frozen encoder outputs for every audio clip, cached by content (skipped when present)."""
    tr.features_dir.mkdir(parents=True, exist_ok=True)
    audio = tr.audio()
    todo = [k for k in sorted(audio) if not tr.feature_path(k).exists()]
    t0 = time.time()
    if todo:
        enc = load_encoder(tr.cfg)
        for i in range(0, len(todo), batch):
            keys = todo[i:i + batch]
            waves = [decode_audio(audio[k]["audio"], tr.cfg.max_audio_s) for k in keys]
            for k, f in zip(keys, enc.encode(waves)):
                tmp = tr.features_dir / f".{k}.tmp-{os.getpid()}.npy"
                np.save(tmp, f.astype(np.float16))
                tmp.replace(tr.feature_path(k))
        tr.timing("features", time.time() - t0)
    return {"clips": len(audio), "computed": len(todo), "seconds": round(time.time() - t0, 1)}


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:  # linear warm-up, cosine to 10 %
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))
    return f


def _batches(n: int, bs: int, seed: int, step: int) -> list[int]:
    """Indices of the batch for a global step: a seeded permutation per epoch (so resume is exact)."""
    per_epoch = max(1, math.ceil(n / bs))
    epoch, b = divmod(step, per_epoch)
    perm = np.random.default_rng(seed + epoch).permutation(n)
    return perm[b * bs:(b + 1) * bs].tolist()


def mean_loss(tr: TrainRun, model: SpeechLM, examples: list[Example], bs: int | None = None) -> float | None:
    if not examples:
        return None
    torch = _torch()
    bs = bs or tr.cfg.batch_size
    total, n = 0.0, 0
    model.adapter.eval()
    with torch.no_grad():
        for i in range(0, len(examples), bs):
            chunk = examples[i:i + bs]
            total += float(model.loss(chunk, tr.features([e.audio_key for e in chunk]))) * len(chunk)
            n += len(chunk)
    return total / n


def fit(tr: TrainRun) -> dict:
    """Train the adapter (+LoRA) up to max_steps, resuming from the last checkpoint."""
    torch = _torch()
    cfg = tr.cfg
    seed_everything(cfg.seed)
    model = speech_lm(tr)
    train, val = tr.split("train"), tr.split("val")
    probe = train[:16]  # fixed subset: train loss before/after (independent of batch draws)
    params = list(model.trainable().values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))
    step, resumed_from, history = 0, None, {}
    log_path = tr.dir / "train_log.jsonl"
    last = tr.last_checkpoint()
    if last is not None:
        meta = resume_checkpoint(tr, last, model, opt, sched, "adapter.safetensors", "model config")
        step = resumed_from = meta["step"]
        history = meta.get("history", {})
        _truncate_log(log_path, step)
    else:
        log_path.unlink(missing_ok=True)
        history["initial_probe_loss"] = mean_loss(tr, model, probe)
        history["initial_val_loss"] = mean_loss(tr, model, val)
    t0 = time.time()
    steps_run = 0
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.max_steps, initial=step, desc="     fit", unit="step", disable=step >= cfg.max_steps)
    with open(log_path, "a") as log, bar:
        while step < cfg.max_steps:
            model.adapter.train()
            idx = _batches(len(train), cfg.batch_size, cfg.seed, step)
            chunk = [train[i] for i in idx]
            loss = model.loss(chunk, tr.features([e.audio_key for e in chunk]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            sched.step()
            step += 1
            steps_run += 1
            rec = {"step": step, "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0], "grad_norm": round(gn, 4),
                   "tasks": _count(e.task for e in chunk), "t": round(time.time() - t0, 2)}
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", examples_per_s=f"{steps_run * cfg.batch_size / max(rec['t'], 1e-6):.2f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                rec["val_loss"] = mean_loss(tr, model, val)
                if step == cfg.max_steps:
                    history["final_probe_loss"] = mean_loss(tr, model, probe)
                    history["final_val_loss"] = rec["val_loss"]
                log.write(json.dumps(rec) + "\n")
                log.flush()
                best = rec["val_loss"] is not None and rec["val_loss"] < history.get("best_val_loss", float("inf"))
                if best:
                    history["best_step"], history["best_val_loss"] = step, rec["val_loss"]
                ck = save_checkpoint(tr, model, opt, sched, step, history)
                if best:
                    _copy_dir_atomic(ck, tr.ckpt_dir / "best", exclude=("trainer_state.pt",))
            else:
                log.write(json.dumps(rec) + "\n")
                log.flush()
    seconds = time.time() - t0
    if steps_run:
        tr.timing("fit", seconds)
    trainable = sum(p.numel() for p in params)
    return {"step": step, "resumed_from": resumed_from, "steps_run": steps_run, "seconds": round(seconds, 1),
            "trainable_params": trainable, **history}


def _truncate_log(path: Path, step: int) -> None:
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(x + "\n" for x in keep))


def _copy_dir_atomic(src: Path, dst: Path, exclude: tuple[str, ...] = ()) -> None:
    tmp = dst.with_name(f".tmp-{dst.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(*exclude))
    old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)


def eval_checkpoint(tr: TrainRun) -> Path | None:
    """The checkpoint evaluate() scores: lowest validation loss (cfg.eval_checkpoint == "best") or the last."""
    best = tr.ckpt_dir / "best"
    if tr.cfg.eval_checkpoint == "best" and (best / "meta.json").exists():
        return best
    return tr.last_checkpoint()


def save_checkpoint(tr: TrainRun, model, opt, sched, step: int, history: dict, weights: str = "adapter.safetensors",
                    weights_meta: dict | None = None, extra_meta: dict | None = None) -> Path:
    """Trainable weights (safetensors) + optimizer/RNG state, written to a temp dir then renamed; older
    checkpoints beyond keep_checkpoints are removed. Shared by the DeSTA and GRASS runs."""
    torch = _torch()
    from safetensors.torch import save_file

    tr.ckpt_dir.mkdir(parents=True, exist_ok=True)
    final = tr.ckpt_dir / f"step-{step:06d}"
    tmp = tr.ckpt_dir / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = weights_meta if weights_meta is not None else {"llm": tr.cfg.llm, "encoder": tr.cfg.encoder}
    save_file(model.state(), str(tmp / weights), metadata={"step": str(step), **meta})
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate(), "numpy_rng": np.random.get_state()}, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, "config_digest": tr.config_digest(), "data_digest": tr.data_digest(),
                                               "history": history, **(extra_meta or {}),
                                               "train_config": tr.cfg.model_dump()}, indent=1))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in tr.checkpoints()[: -max(1, tr.cfg.keep_checkpoints)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resume_checkpoint(tr: TrainRun, last: Path, model, opt, sched, weights: str, trained_with: str) -> dict:
    """Load a checkpoint written by save_checkpoint into model/optimizer/scheduler and restore the RNGs;
    refuses one made with another config or data. Returns its meta.json."""
    torch = _torch()
    from safetensors.torch import load_file

    meta = json.loads((last / "meta.json").read_text())
    if meta["config_digest"] != tr.config_digest() or meta["data_digest"] != tr.data_digest():
        raise TrainError(f"{last} was trained with another {trained_with} or data (digests {meta['config_digest']}/"
                         f"{meta['data_digest']} vs {tr.config_digest()}/{tr.data_digest()}); "
                         "pass --overwrite or use another --output-dir")
    model.load_state(load_file(str(last / weights)))
    state = torch.load(last / "trainer_state.pt", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(state["python_rng"])
    np.random.set_state(state["numpy_rng"])
    return meta


# ==== evaluation =====================================================================================
SYSTEMS = ("no_audio", "asr_text", "model", "model_shuffled_audio")
SYSTEM_DOC = {
    "no_audio": "frozen LLM, same prompt without the audio",
    "asr_text": "frozen LLM given the ASR transcript as text in place of the audio",
    "model": "trained adapter: frozen LLM with audio embeddings",
    "model_shuffled_audio": "trained adapter fed another test clip's audio (control: does the model use the audio?)",
}


def _asr_user(user: str, transcript: str | None) -> str:
    return user.replace(AUDIO_TOKEN, f'(Transcript of the audio: "{transcript or ""}")')


def _other(exs: list[Example], i: int) -> int:
    """Index of the next example (cyclic) from another group; i + 1 when all share one group."""
    n = len(exs)
    for k in range(1, n):
        if exs[(i + k) % n].group != exs[i].group:
            return (i + k) % n
    return (i + 1) % n


def evaluate(tr: TrainRun) -> dict:
    """Score the last checkpoint and the baselines on the test split -> metrics.json, predictions.jsonl."""
    cfg = tr.cfg
    seed_everything(cfg.seed)
    last = eval_checkpoint(tr)
    if last is None:
        raise TrainError(f"no checkpoint under {tr.ckpt_dir}: run fit first")
    from safetensors.torch import load_file

    model = speech_lm(tr)
    model.load_state(load_file(str(last / "adapter.safetensors")))
    model.adapter.eval()
    test = tr.split("test")
    by_task: dict[str, list[Example]] = {}
    for e in test:
        by_task.setdefault(e.task, []).append(e)
    t0 = time.time()
    preds = []
    from tqdm.auto import tqdm

    n_eval = sum(min(len(v), cfg.max_eval_examples or len(v)) for v in by_task.values())
    bar = tqdm(total=n_eval, desc="evaluate", unit="example")
    for task, exs in sorted(by_task.items()):
        exs = exs[: cfg.max_eval_examples] if cfg.max_eval_examples else exs
        with model.torch.no_grad():
            audio = model.audio_embeddings(tr.features([e.audio_key for e in exs]))
        shuffled = [audio[_other(exs, i)] for i in range(len(exs))]  # a clip of another speaker/source if any
        for i, e in enumerate(exs):
            inputs = {"no_audio": (e.user, None, False), "asr_text": (_asr_user(e.user, e.transcript), None, False),
                      "model": (e.user, audio[i], True), "model_shuffled_audio": (e.user, shuffled[i], True)}
            rec = {"id": e.id, "task": task, "kind": e.kind, "group": e.group, "reference": e.reference, "meta": e.meta}
            for system, (user, a, lora) in inputs.items():
                model.set_lora(lora)
                with model.torch.no_grad():
                    prefix = model.prefix(user, a)
                if e.kind == "label":
                    choice, scores = model.choose(prefix, e.choices)
                    rec[system] = choice
                    rec[f"{system}_scores"] = [round(s, 3) for s in scores]
                else:
                    rec[system] = model.generate(prefix, cfg.max_new_tokens)
                    if e.kind == "label_text":
                        lt = next(lt for lt in cfg.label_tasks if lt.name == e.task)
                        rec[f"{system}_class"] = answer_class(rec[system], e.choices, lt.synonyms)
            model.set_lora(True)
            preds.append(rec)
            bar.update(1)
            bar.set_postfix(task=task, examples_per_s=f"{bar.n / max(time.time() - t0, 1e-6):.2f}")
    bar.close()
    seconds = time.time() - t0
    tr.timing("evaluate", seconds)
    tasks = {}
    for task in sorted({p["task"] for p in preds}):
        kind, metric, scores, rows = score_task([p for p in preds if p["task"] == task], SYSTEMS)
        higher = metric != "wer"
        entry = {"metric": metric, "higher_is_better": higher, "n": len(rows), "scores": {k: round(v, 4) for k, v in scores.items()}}
        if kind in ("label", "label_text"):
            ref = [p["reference"] for p in rows]
            entry["majority_class_accuracy"] = round(max(ref.count(c) for c in set(ref)) / len(ref), 4)
            pred = (lambda p, s: p[s]) if kind == "label" else (lambda p, s: p[f"{s}_class"])
            right = lambda p, s: pred(p, s) == p["reference"]
            entry["model_vs_no_audio"] = {"model_right_only": sum(right(p, "model") and not right(p, "no_audio") for p in rows),
                                          "no_audio_right_only": sum(right(p, "no_audio") and not right(p, "model") for p in rows)}
        beats = (scores["model"] > scores["no_audio"]) if higher else (scores["model"] < scores["no_audio"])
        entry["model_beats_no_audio"] = bool(beats)
        entry["model_uses_audio"] = bool((scores["model"] > scores["model_shuffled_audio"]) if higher
                                         else (scores["model"] < scores["model_shuffled_audio"]))
        tasks[task] = entry
    with open(tr.dir / "predictions.jsonl", "w") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    meta = json.loads((last / "meta.json").read_text())
    label_tasks = [t for t in tasks if tasks[t]["metric"] == "accuracy"]
    failures = [t for t in label_tasks if not tasks[t]["model_beats_no_audio"]]
    metrics = {
        "language": tr.profile.language, "data_dir": str(tr.data_dir), "checkpoint": str(last.relative_to(tr.dir)),
        "step": meta["step"], "trained_steps": int(tr.last_checkpoint().name.split("-")[1]),
        "eval_checkpoint": tr.cfg.eval_checkpoint, "systems": SYSTEM_DOC, "tasks": tasks,
        "label_tasks_beat_no_audio": not failures if label_tasks else None, "label_task_failures": failures,
        "training": {**json.loads((tr.last_checkpoint() / "meta.json").read_text()).get("history", {}), "trainable_params": sum(v.numel() for v in model.trainable().values())},
        "split": {s: len(tr.split(s)) for s in SPLITS},
        "config": {"encoder": cfg.encoder, "llm": cfg.llm, "adapter": cfg.adapter, "pool": cfg.pool, "lora_rank": cfg.lora_rank,
                   "max_steps": cfg.max_steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "device": cfg.device, "dtype": cfg.dtype,
                   "decoding": f"greedy, no_repeat_ngram_size=4, max_new_tokens={cfg.max_new_tokens}; labels: max log-likelihood choice"},
        "timings_s": {**tr.timings()},
    }
    _write_json(tr.dir / "metrics.json", metrics)
    return metrics


def score_task(rows: list[dict], systems) -> tuple[str, str, dict[str, float], list[dict]]:
    """Score one task's prediction records for each system: accuracy for label tasks, corpus WER for asr,
    mean ROUGE-L F1 for generated answers. Returns (kind, metric, {system: score}, the rows scored);
    label rows whose reference names no class are not scored."""
    from rouge_score import rouge_scorer

    kinds = {p["kind"] for p in rows}
    kind = "label_text" if "label_text" in kinds else rows[0]["kind"]
    rows = [p for p in rows if p["kind"] == kind]
    metric = {"label": "accuracy", "label_text": "accuracy", "asr": "wer", "generate": "rougeL_f1"}[kind]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = {}
    for s in systems:
        if kind == "label":
            scores[s] = float(np.mean([p[s] == p["reference"] for p in rows]))
        elif kind == "label_text":
            scores[s] = float(np.mean([p[f"{s}_class"] == p["reference"] for p in rows]))
        elif kind == "asr":
            scores[s] = corpus_wer([p["reference"] for p in rows], [p[s] for p in rows])
        else:
            scores[s] = float(np.mean([scorer.score(p["reference"], p[s])["rougeL"].fmeasure for p in rows]))
    return kind, metric, scores, rows


def corpus_wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    pairs = [(normalize(r), normalize(h) or "<empty>") for r, h in zip(refs, hyps) if normalize(r)]
    if not pairs:
        return float("nan")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


# ==== report ==========================================================================================
def write_report(tr: TrainRun) -> Path:
    """report.md (+ loss.png) from metrics.json, split.json, train_log.jsonl and predictions.jsonl."""
    m = json.loads((tr.dir / "metrics.json").read_text())
    split = json.loads((tr.dir / "split.json").read_text())
    log = [json.loads(x) for x in (tr.dir / "train_log.jsonl").read_text().splitlines() if x.strip()]
    preds = [json.loads(x) for x in (tr.dir / "predictions.jsonl").read_text().splitlines() if x.strip()]
    _plot_loss(log, tr.dir / "loss.png")
    c, t, h = m["config"], m["timings_s"], m["training"]
    lines = [f"# Speech LM training report ({m['language']})", "",
             f"DeSTA2-style: frozen Whisper encoder `{c['encoder']}` -> trainable {c['adapter']} adapter "
             f"({h['trainable_params']:,} parameters{', LoRA rank %d' % c['lora_rank'] if c['lora_rank'] else ''}) -> frozen LLM `{c['llm']}`.",
             f"Trained {m['trained_steps']} steps (batch {c['batch_size']}, lr {c['lr']}, {c['device']}/{c['dtype']}); scored: "
             f"`{m['checkpoint']}` (step {m['step']}, {'lowest validation loss' if m['checkpoint'].endswith('best') else 'last step'}). "
             f"Data: `{m['data_dir']}`.", "",
             "Time (s): " + ", ".join(f"{k} {v}" for k, v in t.items()), "", "## Verdict", ""]
    if m["label_tasks_beat_no_audio"] is None:
        lines.append("No label task in the test split: no accuracy verdict.")
    elif m["label_tasks_beat_no_audio"]:
        lines.append("The trained model beats the no-audio baseline on every label task.")
    else:
        lines.append(f"**FAILURE: the trained model does not beat the no-audio baseline on {', '.join(m['label_task_failures'])}.** "
                     "It has not learned to use the audio for these labels (see the shuffled-audio control and the test size n).")
    for task, e in m["tasks"].items():
        verdict = "beats" if e["model_beats_no_audio"] else "does NOT beat"
        uses = "better with the right audio than with shuffled audio" if e["model_uses_audio"] else "no better with the right audio than with shuffled audio"
        lines.append(f"- `{task}` ({e['metric']}, n={e['n']}): model {verdict} no-audio ({fmt(e['scores']['model'])} vs "
                     f"{fmt(e['scores']['no_audio'])}); {uses}.")
    lines += ["", "## Scores on the held-out test split", "",
              "| task | metric | n | " + " | ".join(SYSTEMS) + " |", "|---|---|---:|" + "---:|" * len(SYSTEMS)]
    for task, e in m["tasks"].items():
        arrow = "↑" if e["higher_is_better"] else "↓"
        extra = f" (majority {e['majority_class_accuracy']:.2f})" if "majority_class_accuracy" in e else ""
        lines.append(f"| {task} | {e['metric']} {arrow}{extra} | {e['n']} | " + " | ".join(fmt(e["scores"][s]) for s in SYSTEMS) + " |")
    lines += ["", "Systems: " + "; ".join(f"**{k}**: {v}" for k, v in m["systems"].items()) + ".",
              f"Decoding: {c['decoding']}.", "",
              "## Split (by %s; TTS rows by text id)" % split["split_by"], "",
              "| split | groups | examples | by task |", "|---|---:|---:|---|"]
    for s in SPLITS:
        v = split["summary"][s]
        lines.append(f"| {s} | {v['groups']} | {v['examples']} | " + ", ".join(f"{k} {n}" for k, n in v["by_task"].items()) + " |")
    ov = split["overlap"]
    lines += ["", "Overlap between splits: " + ("none (speakers/sources/texts and audio clips are disjoint)." if not any(ov.values())
                                                 else f"**{ov}**"), "",
              *training_lines(h, log, preds, SYSTEMS)]
    grass = tr.dir / "grass" / "metrics.json"
    if grass.exists():  # the GRASS variant (pipeline/train_grass.py) was run on the same split
        from .train_grass import summary_lines

        lines += ["## GRASS variant (Whisper decoder fine-tuned on the same data)", "", *summary_lines(grass, m, "grass/report.md")]
    lines += ["## Notes", "",
              "- GRASS variant (fine-tuning the Whisper *decoder* on spoken instructions, encoder frozen): "
              + ("scored above, details in `grass/report.md`." if grass.exists() else
                 "not run for this report. It is `pipeline/train_grass.py` (`python -m pipeline.train --lang "
                 f"{m['language']} --variant grass --whisper openai/whisper-small`, or a local transformers Whisper "
                 "directory); it needs PyTorch Whisper weights, and only the CTranslate2 conversion is embedded offline."),
              "- Scores on this sample are from a very small test split (see n); treat them as a smoke test of the "
              "method, not as a measurement of it.", ""]
    out = tr.dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def training_lines(h: dict, log: list[dict], preds: list[dict], systems) -> list[str]:
    """Report markdown: loss curve, probe/validation loss, the checkpoint table and two sample predictions per task."""
    lines = ["## Training", "", "![training loss](loss.png)", "",
             f"Probe loss (fixed 16 training examples): {fmt(h.get('initial_probe_loss'))} -> {fmt(h.get('final_probe_loss'))}; "
             f"validation loss: {fmt(h.get('initial_val_loss'))} -> {fmt(h.get('final_val_loss'))}.", ""]
    ckpts = [r for r in log if "val_loss" in r]
    if ckpts:
        lines += ["| step | train loss | val loss |", "|---:|---:|---:|"] + [f"| {r['step']} | {r['loss']:.3f} | {fmt(r['val_loss'])} |" for r in ckpts]
    lines += ["", "## Sample predictions", ""]
    for task in sorted({p["task"] for p in preds}):
        for p in [p for p in preds if p["task"] == task][:2]:
            lines += [f"**{task}** `{p['id']}`", "", f"- reference: {_md(p['reference'])}"]
            lines += [f"- {s}: {_md(p[s])}" for s in systems] + [""]
    return lines


def _md(s: str) -> str:
    s = (s or "").replace("\n", " ").replace("|", "\\|")
    return s[:300] + ("..." if len(s) > 300 else "")


def _plot_loss(log: list[dict], path: Path) -> None:
    if not log:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    steps, loss = [r["step"] for r in log], [r["loss"] for r in log]
    ax.plot(steps, loss, lw=0.8, alpha=0.5, label="train (batch)")
    k = max(1, len(loss) // 20)
    if len(loss) >= 2 * k and k > 1:
        sm = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], sm, lw=1.5, label=f"train ({k}-step mean)")
    v = [(r["step"], r["val_loss"]) for r in log if r.get("val_loss") is not None]
    if v:
        ax.plot(*zip(*v), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ==== entry points ====================================================================================
def run_all(profile: Profile, output_dir: str | None = None, data_dir: str | None = None, overwrite: bool = False) -> dict:
    """The same steps as the Prefect flow `train`, in-process."""
    tr = TrainRun(profile, output_dir, data_dir, overwrite)
    out = {"prepare": prepare(tr), "features": compute_features(tr), "fit": fit(tr)}
    metrics = evaluate(tr)
    out["report"] = str(write_report(tr))
    out["tasks"] = {k: v["scores"] for k, v in metrics["tasks"].items()}
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """`--set max_steps=50 --set adapter=qformer` -> {"train.max_steps": "50", ...} (dotted profile keys;
    keys outside train need their section, e.g. `--set train.lr=3e-4`)."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep:
            raise SystemExit(f"--set needs key=value, got {it!r}")
        k = k.strip()
        out[k if k.startswith("train.") else f"train.{k}"] = yaml_value(v)
    return out


def yaml_value(v: str):
    import yaml

    return yaml.safe_load(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline train", description="Train and score a DeSTA2-style speech LM on the shards.")
    ap.add_argument("--lang", required=True, help="language profile (config/profiles/<lang>.yaml)")
    ap.add_argument("--profile", help="explicit profile YAML")
    ap.add_argument("--output-dir", help="output root: reads <output-dir>/<lang>/, writes <output-dir>/<lang>/train/")
    ap.add_argument("--data-dir", help="dataset folder with utterances/ and instructions/ (default <output-dir>/<lang>)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="train config override, e.g. --set max_steps=50")
    ap.add_argument("--overwrite", action="store_true", help="start training again (the feature cache is kept)")
    ap.add_argument("--no-prefect", action="store_true", help="run in-process without Prefect")
    ap.add_argument("--variant", choices=("desta", "grass"), default="desta",
                    help="desta: adapter between a frozen Whisper encoder and a frozen LLM; grass: fine-tune a Whisper "
                         "decoder on the same examples and split (pipeline/train_grass.py, writes train/grass/)")
    ap.add_argument("--whisper", help="grass: Whisper model, hub name or local transformers directory (default openai/whisper-small); "
                                      "other GRASS settings: --set grass.lr=1e-5 ...")
    a = ap.parse_args(argv)
    from .config import UnknownLanguage

    grass = {k.strip()[len("grass."):]: yaml_value(v) for k, _, v in (x.partition("=") for x in a.set or [])
             if k.strip().startswith("grass.")}
    if grass and a.variant != "grass":
        raise SystemExit("--set grass.* needs --variant grass")
    overrides = parse_overrides([x for x in a.set or [] if not x.strip().startswith("grass.")])
    try:
        profile = load_profile(a.lang, a.profile, **overrides)
    except UnknownLanguage as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    if a.variant == "grass" and (a.no_prefect or a.profile):
        from .train_grass import run_grass

        out = run_grass(profile, a.output_dir, a.data_dir, whisper=a.whisper, overwrite=a.overwrite, grass=grass)
    elif a.variant == "grass":
        from .cli import _prefect_env

        _prefect_env()
        from flows.train import train

        out = train(lang=a.lang, output_dir=a.output_dir, data_dir=a.data_dir, overwrite=a.overwrite, overrides=overrides,
                    variant="grass", whisper=a.whisper, grass=grass)
    elif a.no_prefect or a.profile:
        out = run_all(profile, a.output_dir, a.data_dir, a.overwrite)
    else:
        from .cli import _prefect_env

        _prefect_env()
        from flows.train import train

        out = train(lang=a.lang, output_dir=a.output_dir, data_dir=a.data_dir, overwrite=a.overwrite, overrides=overrides)
    print(json.dumps({**out, "seconds": round(time.time() - t0, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
