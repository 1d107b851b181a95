"""GRASS variant: fine-tune a Whisper model's *decoder* (encoder frozen) to answer spoken instructions.

GRASS (Xia et al. 2023, arXiv 2309.02780) trains Whisper on instruction-speech pairs: the audio goes
through the (frozen) encoder, the task text is given to the decoder as prompt tokens, and the decoder
(all its parameters) learns to generate the answer. Here the examples, the split by speaker / source /
text id and the metric kinds are those of the DeSTA2 run (pipeline/train.py: build_examples,
split_groups, ...); only the model differs. Decoder sequence of one example::

    <|startofprev|> {text prompt}  <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|> {response} <|endoftext|>
    `------------- prompt (Whisper's previous-text slot; the user message without <|AUDIO|>) --'  `-- loss here --'

- Model: transformers ``WhisperForConditionalGeneration`` + ``WhisperProcessor``, from a hub name
  (production: ``openai/whisper-small`` ... ``openai/whisper-large-v3`` on cuda) or a local directory.
  Weights are float32 (the trainable decoder keeps float32 master weights); ``train.dtype`` bfloat16 /
  float16 runs the forward passes under autocast and stores the frozen encoder in that dtype.
- The encoder is frozen, so its outputs (1500 frames: Whisper's decoder always attends to the padded
  30 s window) are computed once per clip and cached under ``grass/features/`` (float16);
  ``grass.cache_encoder: false`` computes them per batch instead (large corpora, large models).
- Training settings are the profile's ``train`` ones (steps, batch, schedule, checkpoints, seed, split)
  with GRASS-specific overrides in :class:`GrassConfig` (a decoder fine-tune wants a much lower lr than
  the DeSTA adapter). Checkpoints hold the decoder weights (safetensors) + optimizer/RNG state; a rerun
  resumes from the last one and continues exactly as an uninterrupted run.
- Evaluation on the test split (same examples as DeSTA): ``base`` (the Whisper model before decoder
  fine-tuning, same inputs), ``model``, ``model_silence`` (control: 1 s of silence in place of the
  audio) and ``model_shuffled_audio`` (control: another test clip). ROUGE-L F1 for generated answers,
  WER for ASR, accuracy for labels (closed questions: most likely choice; free answers: the class
  they name).

Everything lands in ``<output_dir>/<lang>/train/grass/`` (split.json, features/, checkpoints/,
train_log.jsonl, metrics.json, predictions.jsonl, report.md, loss.png, timings.json).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see pipeline/train.py (only effective before torch loads)

import hashlib
import json
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from . import train as T
from .config import Profile, TrainConfig, load_profile

SYSTEMS = ("base", "model", "model_silence", "model_shuffled_audio")
SYSTEM_DOC = {
    "base": "the Whisper model before decoder fine-tuning, same audio and prompt (zero-shot)",
    "model": "GRASS: Whisper with the fine-tuned decoder",
    "model_silence": "fine-tuned model fed 1 s of silence in place of the audio (control: prompt-only prior)",
    "model_shuffled_audio": "fine-tuned model fed another test clip's audio (control: does the model use the audio?)",
}
FORMAT = "grass-v1"  # decoder sequence layout; part of the checkpoint digest


class GrassConfig(BaseModel):
    """GRASS settings; ``None`` fields fall back to the profile's ``train`` section."""

    model_config = ConfigDict(extra="forbid")

    whisper: str = "openai/whisper-small"  # hub name or local directory (transformers format)
    lr: float = 1e-5  # full-decoder fine-tune (the DeSTA adapter's train.lr is far too high here)
    warmup_steps: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    checkpoint_every: int | None = None
    weight_decay: float | None = None
    language: str | None = None  # Whisper language token; None: the profile's language (omitted when the model has none)
    task_token: Literal["transcribe", "translate", "none"] = "transcribe"
    use_prompt: bool = True  # the text prompt as <|startofprev|> tokens (False: audio only, as spoken-instruction GRASS data)
    cache_encoder: bool = True  # frozen encoder outputs cached on disk (float16, 1500 x d_model per clip)
    no_repeat_ngram_size: int = 4  # greedy decoding, as the DeSTA run


TRAIN_OVERRIDES = ("lr", "warmup_steps", "max_steps", "batch_size", "checkpoint_every", "weight_decay")


def grass_config(profile: Profile, grass: GrassConfig | dict | None = None, **overrides) -> GrassConfig:
    """The profile's ``train.grass`` section (when the config has one) <- ``grass`` <- keyword overrides."""
    base = getattr(profile.train, "grass", None)
    d = base.model_dump() if isinstance(base, BaseModel) else dict(base or {})
    d.update(grass.model_dump(exclude_unset=True) if isinstance(grass, BaseModel) else (grass or {}))
    d.update({k: v for k, v in overrides.items() if v is not None})
    return GrassConfig(**d)


def _torch():
    import torch

    return torch


# ==== tokenizer without a hub ============================================================================
def whisper_tokenizer_from_openai(multilingual: bool = True, num_languages: int = 99):
    """A transformers ``WhisperTokenizer`` built offline from the BPE ranks bundled with the openai-whisper
    package (``whisper/assets/*.tiktoken``): the same ids as openai's tokenizer and as the hub's
    ``openai/whisper-*`` tokenizers (special tokens in openai's order, language tokens included also in the
    English-only vocabulary: 51864 ids, multilingual 51865, large-v3 num_languages=100). For tests and for converting
    openai-whisper checkpoints; production models bring their own tokenizer."""
    import whisper
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from whisper.tokenizer import LANGUAGES

    path = str(Path(whisper.__file__).parent / "assets" / ("multilingual.tiktoken" if multilingual else "gpt2.tiktoken"))
    vocab, merges = TikTokenConverter(path).extract_vocab_merges_from_model(path)
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{lang}|>" for lang in list(LANGUAGES)[:num_languages]],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    tok.add_tokens([AddedToken(s, special=True, normalized=False) for s in specials], special_tokens=True)
    tok.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(1501)])
    return tok


# ==== model ============================================================================================
class GrassModel:
    """Whisper (transformers) with a frozen encoder and a trainable decoder; builds GRASS decoder sequences."""

    def __init__(self, ref: str, cfg: TrainConfig, gcfg: GrassConfig, language: str | None):
        torch = _torch()
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.torch, self.cfg, self.gcfg, self.device = torch, cfg, gcfg, cfg.device
        try:
            proc = WhisperProcessor.from_pretrained(ref)
            model = WhisperForConditionalGeneration.from_pretrained(ref, dtype=torch.float32)
        except OSError as e:
            if (Path(ref) / "model.bin").exists():
                raise T.TrainError(f"{ref} is a CTranslate2 conversion (faster-whisper); GRASS needs transformers weights") from e
            raise T.TrainError(f"cannot load Whisper {ref!r} (a transformers Whisper directory or hub name; "
                               f"no hub access here unless its files are cached): {e}") from e
        self.fe, self.tok = proc.feature_extractor, proc.tokenizer
        self.model = model.to(cfg.device)
        self.amp_dtype = getattr(torch, cfg.dtype)
        self.encoder = self.model.model.encoder.requires_grad_(False).eval()
        if cfg.dtype != "float32":
            self.encoder.to(self.amp_dtype)
        self.decoder = self.model.model.decoder
        self.proj_out = self.model.proj_out  # tied to decoder.embed_tokens (trained with it)
        if cfg.gradient_checkpointing:  # (renamed activation_checkpointing_enable in recent transformers)
            getattr(self.model, "activation_checkpointing_enable", self.model.gradient_checkpointing_enable)()
        self.model.config.use_cache = False
        c = self.model.config
        self.max_len = c.max_target_positions
        tid = self.tok.convert_tokens_to_ids
        self.eot, self.sot, self.prev = tid("<|endoftext|>"), tid("<|startoftranscript|>"), tid("<|startofprev|>")
        multilingual = c.vocab_size >= 51865  # openai's rule (English-only models: 51864)
        seq = [self.sot]
        lang_id = tid(f"<|{language}|>") if language and multilingual else None
        if lang_id is not None and lang_id not in (self.eot, self.tok.unk_token_id):
            seq.append(lang_id)
        if multilingual and gcfg.task_token != "none":
            seq.append(tid(f"<|{gcfg.task_token}|>"))
        seq.append(tid("<|notimestamps|>"))
        self.sot_seq = seq
        self._cache: dict[str, list[int]] = {}

    # -- parameters --------------------------------------------------------------------------------------
    def trainable(self) -> dict:
        return {f"decoder.{k}": p for k, p in self.decoder.named_parameters()}

    def state(self) -> dict:
        return {k: v.detach().float().cpu().clone().contiguous() for k, v in self.trainable().items()}

    def load_state(self, sd: dict) -> None:
        params = self.trainable()
        if set(sd) != set(params):
            raise T.TrainError(f"checkpoint tensors {sorted(set(sd) ^ set(params))[:4]} do not match the model")
        with self.torch.no_grad():
            for k, p in params.items():
                p.copy_(sd[k].to(p.dtype))

    def autocast(self):
        if self.cfg.dtype == "float32":
            return nullcontext()
        return self.torch.autocast("cuda" if self.device.startswith("cuda") else "cpu", dtype=self.amp_dtype)

    # -- inputs ---------------------------------------------------------------------------------------------
    def encode(self, audios: list[np.ndarray]):
        """Frozen encoder outputs [B, 1500, d_model] (float32) of 16 kHz clips (<= 30 s)."""
        torch = self.torch
        x = self.fe(audios, sampling_rate=T.SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            return self.encoder(x.to(self.device, self.amp_dtype)).last_hidden_state.float()

    def prefix(self, user: str) -> list[int]:
        """<|startofprev|> prompt tokens (the user message without the audio placeholder) + the SOT sequence."""
        if user not in self._cache:
            text = user.replace(T.AUDIO_TOKEN, " ").strip()
            ids: list[int] = []
            if text and self.gcfg.use_prompt:  # Whisper keeps at most max_target_positions // 2 - 1 prompt tokens
                ids = [self.prev] + self.tok(" " + " ".join(text.split()), add_special_tokens=False).input_ids[-(self.max_len // 2 - 1):]
            self._cache[user] = ids + self.sot_seq
        return self._cache[user]

    def target_ids(self, text: str, prefix_len: int) -> list[int]:
        room = min(T.MAX_TARGET_TOKENS, self.max_len - prefix_len - 1)
        return self.tok(" " + text.strip(), add_special_tokens=False).input_ids[:room] + [self.eot]

    def sequence(self, user: str, response: str) -> tuple[list[int], list[int]]:
        """(decoder input ids, labels): teacher forcing, loss on the response tokens + <|endoftext|> only."""
        p = self.prefix(user)
        seq = p + self.target_ids(response, len(p))
        return seq[:-1], [-100] * (len(p) - 1) + seq[len(p):]

    def _logits(self, inputs: list[list[int]], labels: list[list[int]], states):
        """proj_out logits at the labelled positions only (the vocabulary projection dominates small decoders)."""
        torch = self.torch
        n = max(len(x) for x in inputs)
        ids = torch.full((len(inputs), n), self.eot, dtype=torch.long)
        lab = torch.full((len(inputs), n), -100, dtype=torch.long)
        for i, (x, y) in enumerate(zip(inputs, labels)):  # right padding: causal attention never sees it
            ids[i, : len(x)], lab[i, : len(y)] = torch.tensor(x), torch.tensor(y)
        ids, lab = ids.to(self.device), lab.to(self.device)
        with self.autocast():
            h = self.decoder(input_ids=ids, encoder_hidden_states=states, use_cache=False).last_hidden_state
            sel = lab != -100
            return self.proj_out(h[sel]).float(), lab[sel]

    def loss(self, examples: list[T.Example], states):
        inputs, labels = zip(*(self.sequence(e.user, e.response) for e in examples))
        logits, tgt = self._logits(list(inputs), list(labels), states)
        return self.torch.nn.functional.cross_entropy(logits, tgt)

    # -- inference -------------------------------------------------------------------------------------------
    def choose(self, user: str, state, choices: list[str]) -> tuple[str, list[float]]:
        """Closed question: the choice with the highest log-likelihood (its tokens + <|endoftext|>)."""
        torch = self.torch
        seqs = [self.sequence(user, c) for c in choices]
        with torch.no_grad():
            logits, tgt = self._logits([s[0] for s in seqs], [s[1] for s in seqs], state.unsqueeze(0).expand(len(choices), -1, -1))
            lp = torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        sizes = [sum(x != -100 for x in s[1]) for s in seqs]
        scores = [float(x.sum()) for x in lp.split(sizes)]
        return choices[int(np.argmax(scores))], scores

    def generate(self, prefix: list[int], states, max_new_tokens: int) -> list[str]:
        """Greedy decoding (KV cache) of a batch sharing one prefix length; only text tokens or <|endoftext|>
        may be produced (no timestamps / special tokens), n-grams of the output are not repeated."""
        torch = self.torch
        from transformers import NoRepeatNGramLogitsProcessor

        b = states.shape[0]
        ngram = NoRepeatNGramLogitsProcessor(self.gcfg.no_repeat_ngram_size) if self.gcfg.no_repeat_ngram_size else None
        room = min(max_new_tokens, self.max_len - len(prefix))
        ids = torch.tensor([prefix] * b, dtype=torch.long, device=self.device)
        out = torch.zeros(b, 0, dtype=torch.long, device=self.device)
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        past = None
        with torch.no_grad(), self.autocast():
            for _ in range(room):
                o = self.decoder(input_ids=ids, encoder_hidden_states=states, past_key_values=past, use_cache=True)
                past = o.past_key_values
                logits = self.proj_out(o.last_hidden_state[:, -1]).float()
                logits[:, self.eot + 1:] = -float("inf")
                if ngram is not None:
                    logits = ngram(out, logits)
                nxt = torch.where(done, torch.full_like(done, self.eot, dtype=torch.long), logits.argmax(-1))
                out = torch.cat([out, nxt[:, None]], 1)
                done |= nxt == self.eot
                if bool(done.all()):
                    break
                ids = nxt[:, None]
        texts = []
        for row in out.tolist():
            row = row[: row.index(self.eot)] if self.eot in row else row
            texts.append(self.tok.decode(row, skip_special_tokens=True).strip())
        return texts


# ==== run state ==========================================================================================
class GrassRun(T.TrainRun):
    """<output_dir>/<lang>/train/grass/: the DeSTA run's examples and split, GRASS model and outputs."""

    def __init__(self, profile: Profile, output_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 overwrite: bool = False, grass: GrassConfig | dict | None = None, **overrides):
        super().__init__(profile, output_dir, data_dir, overwrite=False)
        self.grass = grass_config(profile, grass, **overrides)
        self.cfg = profile.train.model_copy(update={k: getattr(self.grass, k) for k in TRAIN_OVERRIDES
                                                   if getattr(self.grass, k) is not None})
        self.dir = self.dir / "grass"
        self.features_dir = self.dir / "features"
        self.ckpt_dir = self.dir / "checkpoints"
        if overwrite:  # encoder outputs are a content-addressed cache: kept (with the time they took)
            t = self.dir / "timings.json"
            kept = {k: v for k, v in json.loads(t.read_text()).items() if k == "features"} if t.exists() else {}
            for p in (self.ckpt_dir, self.dir / "split.json", self.dir / "train_log.jsonl", self.dir / "metrics.json",
                      self.dir / "predictions.jsonl", self.dir / "report.md", self.dir / "loss.png", t):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            if kept:
                t.write_text(json.dumps(kept))
        self.dir.mkdir(parents=True, exist_ok=True)
        self._model: GrassModel | None = None
        self._tuned = False  # the in-memory decoder is no longer the pretrained one

    @property
    def language(self) -> str:
        return self.grass.language or self.profile.language

    def whisper_id(self) -> str:
        """The model reference; for a local directory also its config and weight files (size, mtime)."""
        ref = self.grass.whisper
        p = Path(ref)
        if not p.is_dir():
            return ref
        h = hashlib.sha1((p / "config.json").read_bytes() if (p / "config.json").exists() else b"")
        for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return f"{p.resolve()}#{h.hexdigest()[:12]}"

    def config_digest(self) -> str:
        d = {"format": FORMAT, "whisper": self.whisper_id(), "language": self.language, "task_token": self.grass.task_token,
             "use_prompt": self.grass.use_prompt}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def model(self) -> GrassModel:
        """The Whisper model with its pretrained weights (one load per run object)."""
        if self._model is None:
            torch = _torch()
            torch.set_num_threads(self.cfg.threads)
            self._model = GrassModel(self.grass.whisper, self.cfg, self.grass, self.language)
        return self._model

    # -- encoder output cache ------------------------------------------------------------------------------
    def state_key(self, e: T.Example) -> str:
        return hashlib.sha1(f"{self.whisper_id()}\0{e.audio_key}".encode()).hexdigest()[:20]

    def states(self, model: GrassModel, examples: list[T.Example]):
        """Frozen encoder outputs of the examples' clips [B, 1500, d] (from the cache, else computed)."""
        torch = model.torch
        keys = [self.state_key(e) for e in examples]
        have = {k: np.load(self.feature_path(k)) for k in set(keys) if self.feature_path(k).exists()}
        todo = sorted({k for k in keys if k not in have})
        if todo:
            audio = self.audio()
            by_key = {self.state_key(e): e.audio_key for e in examples}
            waves = [T.decode_audio(audio[by_key[k]]["audio"], min(self.cfg.max_audio_s, 30.0)) for k in todo]
            for k, s in zip(todo, model.encode(waves)):
                have[k] = s.cpu().numpy().astype(np.float16)
                if self.grass.cache_encoder:
                    self.features_dir.mkdir(parents=True, exist_ok=True)
                    tmp = self.features_dir / f".{k}.tmp-{os.getpid()}.npy"
                    np.save(tmp, have[k])
                    tmp.replace(self.feature_path(k))
        return torch.from_numpy(np.stack([have[k] for k in keys]).astype(np.float32)).to(model.device)


# ==== steps ===============================================================================================
def prepare(gr: GrassRun) -> dict:
    """The DeSTA run's examples and split (pipeline.train.prepare) -> grass/split.json."""
    return T.prepare(gr)


def compute_features(gr: GrassRun, batch: int = 8) -> dict:
    """Frozen Whisper encoder outputs of every clip of the examples, cached (no-op when cache_encoder is off)."""
    t0 = time.time()
    if not gr.grass.cache_encoder:
        return {"clips": 0, "computed": 0, "seconds": 0.0, "cache": False}
    by_key: dict[str, T.Example] = {}
    for e in gr.examples():
        by_key.setdefault(gr.state_key(e), e)
    todo = [e for k, e in sorted(by_key.items()) if not gr.feature_path(k).exists()]
    if todo:
        model = gr.model()
        for i in range(0, len(todo), batch):
            gr.states(model, todo[i:i + batch])
        gr.timing("features", time.time() - t0)
    return {"clips": len(by_key), "computed": len(todo), "seconds": round(time.time() - t0, 1)}


def mean_loss(gr: GrassRun, model: GrassModel, examples: list[T.Example], bs: int | None = None) -> float | None:
    if not examples:
        return None
    bs = bs or gr.cfg.batch_size
    total = 0.0
    was = model.decoder.training
    model.decoder.eval()
    with model.torch.no_grad():
        for i in range(0, len(examples), bs):
            chunk = examples[i:i + bs]
            total += float(model.loss(chunk, gr.states(model, chunk))) * len(chunk)
    model.decoder.train(was)
    return total / len(examples)


def save_checkpoint(gr: GrassRun, model: GrassModel, opt, sched, step: int, history: dict) -> Path:
    """Decoder weights + optimizer/RNG state (pipeline.train.save_checkpoint)."""
    return T.save_checkpoint(gr, model, opt, sched, step, history, weights="decoder.safetensors",
                             weights_meta={"whisper": gr.grass.whisper}, extra_meta={"grass_config": gr.grass.model_dump()})


def fit(gr: GrassRun, steps: int | None = None) -> dict:
    """Fine-tune the decoder up to max_steps, resuming from the last checkpoint (same schedule/batches as DeSTA's fit).

    ``steps``: stop after that many steps in this call (a checkpoint is written where it stops), e.g. to
    train within a time slot; the next call continues exactly as an uninterrupted run would."""
    torch = _torch()
    cfg = gr.cfg
    T.seed_everything(cfg.seed)
    model = gr.model()
    gr._tuned = True
    train, val = gr.split("train"), gr.split("val")
    probe = train[:16]
    params = list(model.trainable().values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, T._lr_lambda(cfg))
    step, resumed_from, history = 0, None, {}
    log_path = gr.dir / "train_log.jsonl"
    last = gr.last_checkpoint()
    if last is not None:
        meta = T.resume_checkpoint(gr, last, model, opt, sched, "decoder.safetensors", "Whisper/prompt format")
        for g, base in zip(opt.param_groups, sched.base_lrs):  # the schedule of this run's max_steps (may have grown)
            g["lr"] = base * sched.lr_lambdas[0](sched.last_epoch)
        step = resumed_from = meta["step"]
        history = meta.get("history", {})
        T._truncate_log(log_path, step)
    else:
        log_path.unlink(missing_ok=True)
        history["initial_probe_loss"] = mean_loss(gr, model, probe)
        history["initial_val_loss"] = mean_loss(gr, model, val)
    t0 = time.time()
    steps_run, saved = 0, step
    with open(log_path, "a") as log:
        while step < cfg.max_steps and (steps is None or steps_run < steps):
            model.decoder.train()
            chunk = [train[i] for i in T._batches(len(train), cfg.batch_size, cfg.seed, step)]
            loss = model.loss(chunk, gr.states(model, chunk))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            sched.step()
            step += 1
            steps_run += 1
            rec = {"step": step, "loss": round(loss.item(), 5), "lr": sched.get_last_lr()[0], "grad_norm": round(gn, 4),
                   "tasks": T._count(e.task for e in chunk), "t": round(time.time() - t0, 2)}
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                rec["val_loss"] = mean_loss(gr, model, val)
                if step == cfg.max_steps:
                    history["final_probe_loss"] = mean_loss(gr, model, probe)
                    history["final_val_loss"] = rec["val_loss"]
                best = rec["val_loss"] is not None and rec["val_loss"] < history.get("best_val_loss", float("inf"))
                if best:
                    history["best_step"], history["best_val_loss"] = step, rec["val_loss"]
                log.write(json.dumps(rec) + "\n")
                log.flush()
                ck, saved = save_checkpoint(gr, model, opt, sched, step, history), step
                if best:
                    T._copy_dir_atomic(ck, gr.ckpt_dir / "best", exclude=("trainer_state.pt",))
            else:
                log.write(json.dumps(rec) + "\n")
                log.flush()
    if step != saved:  # stopped between checkpoints (steps=...): save where it stopped
        save_checkpoint(gr, model, opt, sched, step, history)
    seconds = time.time() - t0
    if steps_run:
        gr.timing("fit", seconds)
    model.decoder.eval()
    return {"step": step, "resumed_from": resumed_from, "steps_run": steps_run, "seconds": round(seconds, 1),
            "trainable_params": sum(p.numel() for p in params), **history}


SILENCE = -1  # audio source of the model_silence control


def _predict(gr: GrassRun, model: GrassModel, exs: list[T.Example], systems: dict[str, list[int]], recs: list[dict],
             silence) -> None:
    """Fill recs[i][system] for each system ({name: per example, the index of the example whose clip the model
    hears, or SILENCE}). Encoder outputs are loaded per batch (the cache holds them; a test split's worth of
    1500-frame outputs would not fit in GPU memory)."""
    cfg = gr.cfg
    task_of = {lt.name: lt for lt in cfg.label_tasks}

    def states(src: list[int]):
        st = gr.states(model, [exs[j] for j in src if j != SILENCE]) if any(j != SILENCE for j in src) else None
        parts, k = [], 0
        for j in src:
            if j == SILENCE:
                parts.append(silence)
            else:
                parts.append(st[k])
                k += 1
        return model.torch.stack(parts)

    for system, src in systems.items():
        groups: dict[int, list[int]] = {}  # free answers: one batch per prefix length
        for i, e in enumerate(exs):
            if e.kind == "label":  # closed question
                choice, scores = model.choose(e.user, states([src[i]])[0], e.choices)
                recs[i][system], recs[i][f"{system}_scores"] = choice, [round(s, 3) for s in scores]
            else:
                groups.setdefault(len(model.prefix(e.user)), []).append(i)
        for idx in groups.values():
            for j in range(0, len(idx), cfg.batch_size):
                part = idx[j:j + cfg.batch_size]
                st = states([src[i] for i in part])
                prefixes = [model.prefix(exs[i].user) for i in part]
                if len({tuple(p) for p in prefixes}) == 1:
                    texts = model.generate(prefixes[0], st, cfg.max_new_tokens)
                else:  # same length, different prompts: one by one
                    texts = [model.generate(p, st[k:k + 1], cfg.max_new_tokens)[0] for k, p in enumerate(prefixes)]
                for i, t in zip(part, texts):
                    recs[i][system] = t
        for i, e in enumerate(exs):
            if e.kind == "label_text":
                recs[i][f"{system}_class"] = T.answer_class(recs[i][system], e.choices, task_of[e.task].synonyms)


def evaluate(gr: GrassRun) -> dict:
    """Score the base model and the fine-tuned checkpoint (+ controls) on the test split -> grass/metrics.json."""
    from safetensors.torch import load_file

    torch = _torch()
    cfg = gr.cfg
    T.seed_everything(cfg.seed)
    ck = T.eval_checkpoint(gr)
    if ck is None:
        raise T.TrainError(f"no checkpoint under {gr.ckpt_dir}: run fit first")
    by_task: dict[str, list[T.Example]] = {}
    for e in gr.split("test"):
        by_task.setdefault(e.task, []).append(e)
    tasks_ex = {t: (exs[: cfg.max_eval_examples] if cfg.max_eval_examples else exs) for t, exs in sorted(by_task.items())}
    t0 = time.time()
    model = gr.model()
    recs = {t: [{"id": e.id, "task": t, "kind": e.kind, "group": e.group, "reference": e.reference, "meta": e.meta} for e in exs]
            for t, exs in tasks_ex.items()}
    if gr._tuned:  # this run object changed the decoder in memory (fit / an earlier evaluate): reload the pretrained one
        gr._model, gr._tuned = None, False
        model = gr.model()
    # phase 1: the pretrained decoder; phase 2: the checkpoint loaded over it
    model.decoder.eval()
    silence = model.encode([np.zeros(T.SAMPLE_RATE, np.float32)])[0].to(torch.float16).float()
    for t, exs in tasks_ex.items():
        _predict(gr, model, exs, {"base": list(range(len(exs)))}, recs[t], silence)
    # phase 2: the fine-tuned decoder
    model.load_state(load_file(str(ck / "decoder.safetensors")))
    gr._tuned = True
    for t, exs in tasks_ex.items():
        n = len(exs)
        _predict(gr, model, exs, {"model": list(range(n)), "model_silence": [SILENCE] * n,
                                  "model_shuffled_audio": [T._other(exs, i) for i in range(n)]}, recs[t], silence)
    gr.timing("evaluate", time.time() - t0)
    preds = [r for t in recs for r in recs[t]]
    tasks = {}
    for task, rows in recs.items():
        kind, metric, scores, rows = T.score_task(rows, SYSTEMS)
        higher = metric != "wer"
        better = (lambda a, b: a > b) if higher else (lambda a, b: a < b)
        entry = {"metric": metric, "higher_is_better": higher, "n": len(rows), "scores": {k: round(v, 4) for k, v in scores.items()},
                 "model_beats_base": bool(better(scores["model"], scores["base"])),
                 "model_uses_audio": bool(better(scores["model"], scores["model_shuffled_audio"])),
                 "model_beats_silence": bool(better(scores["model"], scores["model_silence"]))}
        if kind in ("label", "label_text"):
            ref = [p["reference"] for p in rows]
            entry["majority_class_accuracy"] = round(max(ref.count(c) for c in set(ref)) / len(ref), 4)
        tasks[task] = entry
    with open(gr.dir / "predictions.jsonl", "w") as f:
        for p in preds:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    meta = json.loads((ck / "meta.json").read_text())
    label_tasks = [t for t in tasks if tasks[t]["metric"] == "accuracy"]
    failures = [t for t in label_tasks if not tasks[t]["model_uses_audio"]]
    metrics = {
        "variant": "grass", "language": gr.profile.language, "data_dir": str(gr.data_dir),
        "checkpoint": str(ck.relative_to(gr.dir)), "step": meta["step"],
        "trained_steps": int(gr.last_checkpoint().name.split("-")[1]), "eval_checkpoint": cfg.eval_checkpoint,
        "systems": SYSTEM_DOC, "tasks": tasks,
        "label_tasks_use_audio": not failures if label_tasks else None, "label_task_failures": failures,
        "training": {**json.loads((gr.last_checkpoint() / "meta.json").read_text()).get("history", {}),
                     "trainable_params": sum(p.numel() for p in model.trainable().values()),
                     "frozen_encoder_params": sum(p.numel() for p in model.encoder.parameters())},
        "split": {s: len(gr.split(s)) for s in T.SPLITS},
        "config": {"whisper": gr.grass.whisper, "language_token": gr.language, "task_token": gr.grass.task_token,
                   "use_prompt": gr.grass.use_prompt, "max_steps": cfg.max_steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                   "device": cfg.device, "dtype": cfg.dtype,
                   "decoding": f"greedy, text tokens only, no_repeat_ngram_size={gr.grass.no_repeat_ngram_size}, "
                               f"max_new_tokens={cfg.max_new_tokens}; labels: max log-likelihood choice"},
        "timings_s": gr.timings(),
    }
    T._write_json(gr.dir / "metrics.json", metrics)
    return metrics


# ==== report ================================================================================================
def summary_lines(metrics_path: Path, desta: dict | None = None, link: str | None = None) -> list[str]:
    """Markdown lines summarising a GRASS metrics.json (for its own report and for the DeSTA report)."""
    m = json.loads(Path(metrics_path).read_text())
    c, h = m["config"], m["training"]
    fmt = T.fmt
    lines = [f"GRASS: Whisper `{c['whisper']}` with a frozen encoder ({h['frozen_encoder_params']:,} parameters) and a fine-tuned "
             f"decoder ({h['trainable_params']:,} parameters); text prompt as `<|startofprev|>` tokens: {c['use_prompt']}. "
             f"Trained {m['trained_steps']} steps (batch {c['batch_size']}, lr {c['lr']}, {c['device']}/{c['dtype']}); "
             f"scored `{m['checkpoint']}` (step {m['step']}) on the same test split" + (f" ([report]({link}))." if link else "."), ""]
    cols = list(SYSTEMS) + (["desta_model"] if desta else [])
    lines += ["| task | metric | n | " + " | ".join(cols) + " |", "|---|---|---:|" + "---:|" * len(cols)]
    for task, e in m["tasks"].items():
        arrow = "↑" if e["higher_is_better"] else "↓"
        vals = [fmt(e["scores"][s]) for s in SYSTEMS]
        if desta:
            d = desta.get("tasks", {}).get(task)
            vals.append(fmt(d["scores"]["model"]) if d else "n/a")
        lines.append(f"| {task} | {e['metric']} {arrow} | {e['n']} | " + " | ".join(vals) + " |")
    lines.append("")
    for task, e in m["tasks"].items():
        lines.append(f"- `{task}`: fine-tuned model {'beats' if e['model_beats_base'] else 'does NOT beat'} the base Whisper; "
                     f"{'better' if e['model_uses_audio'] else 'no better'} with the right audio than with shuffled audio; "
                     f"{'better' if e['model_beats_silence'] else 'no better'} than with silence.")
    return lines + [""]


def write_report(gr: GrassRun) -> Path:
    """grass/report.md (+ loss.png) from grass/metrics.json, split.json, train_log.jsonl, predictions.jsonl."""
    m = json.loads((gr.dir / "metrics.json").read_text())
    log = [json.loads(x) for x in (gr.dir / "train_log.jsonl").read_text().splitlines() if x.strip()]
    preds = [json.loads(x) for x in (gr.dir / "predictions.jsonl").read_text().splitlines() if x.strip()]
    T._plot_loss(log, gr.dir / "loss.png")
    h = m["training"]
    desta_path = gr.dir.parent / "metrics.json"
    desta = json.loads(desta_path.read_text()) if desta_path.exists() else None
    lines = [f"# GRASS variant: Whisper decoder fine-tuned on spoken instructions ({m['language']})", "",
             *summary_lines(gr.dir / "metrics.json", desta),
             "Systems: " + "; ".join(f"**{k}**: {v}" for k, v in m["systems"].items())
             + ("; **desta_model**: the DeSTA2-style adapter model of ../report.md" if desta else "") + ".",
             f"Decoding: {m['config']['decoding']}.", "",
             "Time (s): " + ", ".join(f"{k} {v}" for k, v in m["timings_s"].items()), "",
             "Split: " + ", ".join(f"{s} {n}" for s, n in m["split"].items()) + " examples (split.json; identical to the DeSTA run's).", "",
             *T.training_lines(h, log, preds, SYSTEMS)]
    out = gr.dir / "report.md"
    out.write_text("\n".join(lines))
    return out


# ==== entry point ===========================================================================================
def run_grass(profile: Profile | str, output_dir: str | Path | None = None, data_dir: str | Path | None = None,
              whisper: str | None = None, overwrite: bool = False, grass: GrassConfig | dict | None = None, **overrides) -> dict:
    """prepare -> features -> fit -> evaluate -> report of the GRASS variant, in-process.

    ``profile``: a Profile or a language code; ``whisper``: hub name or local transformers Whisper directory
    (default GrassConfig.whisper); ``grass`` / keyword overrides: GrassConfig fields (e.g. ``lr=1e-5``)."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    gr = GrassRun(profile, output_dir, data_dir, overwrite, grass, whisper=whisper, **overrides)
    out = {"variant": "grass", "whisper": gr.grass.whisper, "prepare": prepare(gr), "features": compute_features(gr), "fit": fit(gr)}
    metrics = evaluate(gr)
    out["report"] = str(write_report(gr))
    out["tasks"] = {k: v["scores"] for k, v in metrics["tasks"].items()}
    desta = gr.dir.parent
    if all((desta / f).exists() for f in ("metrics.json", "split.json", "train_log.jsonl", "predictions.jsonl")):
        # a scored DeSTA run next to it: its report gets the GRASS section
        out["desta_report"] = str(T.write_report(T.TrainRun(profile, output_dir, data_dir)))
    return out
