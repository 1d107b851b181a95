"""The DeSTA2-style speech LM: trainable adapter (MLP projector or Q-Former) and LoRA around the frozen LLM."""
from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np

from pipeline.core.config import TrainConfig
from pipeline.core.rows import AUDIO_TOKEN
from pipeline.train.common import MAX_TARGET_TOKENS, TrainError, torch_module
from pipeline.train.data import Example
from pipeline.train.llm import load_llm
from pipeline.train.run import TrainRun

# the TrainConfig fields a loaded model depends on (one model per process and architecture)
MODEL_KEYS = ("llm", "device", "dtype", "adapter", "pool", "summary_token", "adapter_hidden", "qformer_queries", "qformer_layers",
              "lora_rank", "lora_alpha", "lora_targets", "gradient_checkpointing", "seed", "system_prompt", "loss_average")


def build_adapter(cfg: TrainConfig, enc_dim: int, llm_dim: int, emb_std: float):
    torch = torch_module()
    nn = torch.nn

    class MLPProjector(nn.Module):
        """Stack `pool` encoder frames into one token, then Linear-GELU-Linear-LayerNorm to the LLM width;
        ``summary_token``: first a token from the clip's frame mean and standard deviation (its own small MLP)."""

        def __init__(self):
            super().__init__()
            self.pool = cfg.pool
            self.net = nn.Sequential(nn.Linear(enc_dim * cfg.pool, cfg.adapter_hidden), nn.GELU(),
                                     nn.Linear(cfg.adapter_hidden, llm_dim))
            self.norm = nn.LayerNorm(llm_dim)
            nn.init.constant_(self.norm.weight, emb_std)  # audio tokens start at the scale of text embeddings
            self.summary = None
            if cfg.summary_token:
                self.summary = nn.Sequential(nn.Linear(2 * enc_dim, cfg.adapter_hidden), nn.GELU(),
                                             nn.Linear(cfg.adapter_hidden, llm_dim), nn.LayerNorm(llm_dim))
                nn.init.constant_(self.summary[-1].weight, emb_std)

        def forward(self, feats: list) -> list:
            lens = [math.ceil(f.shape[0] / self.pool) for f in feats]
            x = torch.zeros(len(feats), max(lens) * self.pool, enc_dim, device=feats[0].device)
            for i, f in enumerate(feats):
                x[i, : f.shape[0]] = f
            y = self.norm(self.net(x.reshape(len(feats), max(lens), self.pool * enc_dim)))
            out = [y[i, :n] for i, n in enumerate(lens)]
            if self.summary is None:
                return out
            stats = torch.stack([torch.cat([f.mean(0), f.std(0, unbiased=False)]) for f in feats])
            s = self.summary(stats)
            return [torch.cat([s[i: i + 1], o]) for i, o in enumerate(out)]

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
    torch = torch_module()
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
        torch = torch_module()
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
            msgs = [{"role": "user", "content": user}]
            if self.cfg.system_prompt is not None:
                msgs.insert(0, {"role": "system", "content": self.cfg.system_prompt})
            text = self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            before, _, after = text.partition(AUDIO_TOKEN)
            if AUDIO_TOKEN not in text:
                before, after = text, ""
            enc = lambda s: self.tok(s, add_special_tokens=False).input_ids if s else []
            self._prompt_cache[user] = (enc(before), enc(after))
        return self._prompt_cache[user]

    def _ids(self, ids: list[int]):
        return self.torch.tensor(ids, dtype=self.torch.long, device=self.device)

    def prefix(self, user: str, audio_emb=None, transcript: str | None = None):
        """Embeddings of the rendered chat prompt; audio_emb goes where AUDIO_TOKEN is (None: text only), followed
        by the clip's transcript when ``transcript_input`` (DeSTA2's input: speech features + transcription)."""
        if audio_emb is None:
            user = user.replace(AUDIO_TOKEN, "").strip()
        elif self.cfg.transcript_input and transcript:
            user = user.replace(AUDIO_TOKEN, AUDIO_TOKEN + transcript_text(transcript), 1)
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
        prefixes = [self.prefix(e.user, a, e.transcript) for e, a in zip(examples, audio)]
        emb, mask, lab = self.batch(prefixes, [self.target_ids(e.response) for e in examples])
        logits, targets, rows = self.target_logits(emb, mask, lab, with_rows=True)
        return mean_loss(self.torch, logits, targets, rows, len(examples), self.cfg.loss_average)

    def target_logits(self, emb, mask, lab, with_rows: bool = False):
        """LM-head logits at the positions that predict a label only (the vocabulary projection of every
        prompt/audio position is most of the cost of a small LLM with a large vocabulary); ``with_rows``: also
        the batch row of each selected position."""
        base = getattr(self.llm, self.llm.base_model_prefix)
        h = base(inputs_embeds=emb, attention_mask=mask).last_hidden_state[:, :-1]
        tgt = lab[:, 1:]
        sel = tgt != -100
        out = self.llm.get_output_embeddings()(h[sel]), tgt[sel]
        return (*out, sel.nonzero()[:, 0]) if with_rows else out

    # -- inference ----------------------------------------------------------------------------------
    def generate(self, prefix, max_new_tokens: int) -> str:
        torch = self.torch
        with torch.no_grad():
            out = self.llm.generate(inputs_embeds=prefix.unsqueeze(0), attention_mask=torch.ones(1, prefix.shape[0], dtype=torch.long, device=self.device),
                                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, no_repeat_ngram_size=4,
                                    eos_token_id=self.eos_id, pad_token_id=self.pad_id)
        return self.tok.decode(out[0], skip_special_tokens=True).strip()

    def choose(self, prefix, choices: list[str]) -> tuple[str, list[float]]:
        """Closed question: the choice with the highest log-likelihood (choice tokens + end of turn). The prompt
        is run once (its KV cache is shared by the choices, as if each were scored after the same prompt)."""
        import copy

        torch = self.torch
        with torch.no_grad():
            base = getattr(self.llm, self.llm.base_model_prefix)
            head = self.llm.get_output_embeddings()
            o = base(inputs_embeds=prefix.unsqueeze(0), use_cache=True)
            first = torch.log_softmax(head(o.last_hidden_state[0, -1]).float(), -1)
            scores = []
            for c in choices:
                t = self.target_ids(c)
                lp = float(first[t[0]])
                if len(t) > 1:
                    past = copy.deepcopy(o.past_key_values)
                    h = base(inputs_embeds=self.embed(self._ids(t[:-1])).unsqueeze(0), past_key_values=past, use_cache=True).last_hidden_state[0]
                    lp += float(torch.log_softmax(head(h).float(), -1).gather(-1, self._ids(t[1:]).unsqueeze(-1)).sum())
                scores.append(lp)
        return choices[int(np.argmax(scores))], scores


def transcript_text(transcript: str) -> str:
    """What follows the audio embeddings when the model reads the transcript too."""
    return f'\n(Whisper transcript: "{transcript.strip()}")\n'


def mean_loss(torch, logits, targets, rows, n: int, average: str = "example"):
    """Cross-entropy of the target tokens: the mean over examples of each example's mean token loss
    (``average="example"``: a one-word label answer weighs as much as a 20-word transcript) or over all tokens."""
    tok = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    if average == "token":
        return tok.mean()
    total = torch.zeros(n, device=tok.device).index_add(0, rows, tok)
    k = torch.zeros(n, device=tok.device).index_add(0, rows, torch.ones_like(tok))
    return (total / k.clamp(min=1))[k > 0].mean()


@lru_cache(maxsize=2)
def _model(arch_json: str, enc_dim: int) -> SpeechLM:
    """One SpeechLM per process and architecture (fit and evaluate in one process share the loaded LLM)."""
    return SpeechLM(TrainConfig.model_validate_json(arch_json), enc_dim)


def speech_lm(tr: TrainRun) -> SpeechLM:
    """The model with freshly initialised (seeded) trainable weights; callers load a checkpoint over them."""
    torch = torch_module()
    torch.set_num_threads(tr.cfg.threads)
    key = tr.examples()[0].audio_key
    enc_dim = int(np.load(tr.feature_path(key), mmap_mode="r").shape[1])
    model = _model(json.dumps({k: getattr(tr.cfg, k) for k in MODEL_KEYS}), enc_dim)
    model.load_state(model.initial_state)
    return model
