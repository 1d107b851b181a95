"""GrassModel: a transformers Whisper with a frozen encoder and a trainable decoder, and its GRASS decoder
sequences (prompt as <|startofprev|> tokens, loss on the response), scoring and greedy decoding."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from pipeline.core.audio import SAMPLE_RATE
from pipeline.core.config import TrainConfig
from pipeline.core.rows import AUDIO_TOKEN
from pipeline.train.common import MAX_TARGET_TOKENS, TrainError, torch_module
from pipeline.train.data import Example
from pipeline.train.grass.config import GrassConfig
from pipeline.train.grass.convert import hf_dir_for_ct2, is_ct2


class GrassModel:
    """Whisper (transformers) with a frozen encoder and a trainable decoder; builds GRASS decoder sequences."""

    def __init__(self, ref: str, cfg: TrainConfig, gcfg: GrassConfig, language: str | None):
        torch = torch_module()
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.torch, self.cfg, self.gcfg, self.device = torch, cfg, gcfg, cfg.device
        if is_ct2(ref):  # e.g. the embedded Whisper base: converted once to transformers (grass/convert.py)
            ref = str(hf_dir_for_ct2(ref))
        try:
            proc = WhisperProcessor.from_pretrained(ref)
            model = WhisperForConditionalGeneration.from_pretrained(ref, dtype=torch.float32)
        except OSError as e:
            if (Path(ref) / "model.bin").exists():
                raise TrainError(f"{ref} is a CTranslate2 conversion (faster-whisper); GRASS needs transformers weights") from e
            raise TrainError(f"cannot load Whisper {ref!r} (a transformers Whisper directory or hub name; "
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
            raise TrainError(f"checkpoint tensors {sorted(set(sd) ^ set(params))[:4]} do not match the model")
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
        x = self.fe(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        with torch.no_grad():
            return self.encoder(x.to(self.device, self.amp_dtype)).last_hidden_state.float()

    def prefix(self, user: str) -> list[int]:
        """<|startofprev|> prompt tokens (the user message without the audio placeholder) + the SOT sequence."""
        if user not in self._cache:
            text = user.replace(AUDIO_TOKEN, " ").strip()
            ids: list[int] = []
            if text and self.gcfg.use_prompt:  # Whisper keeps at most max_target_positions // 2 - 1 prompt tokens
                ids = [self.prev] + self.tok(" " + " ".join(text.split()), add_special_tokens=False).input_ids[-(self.max_len // 2 - 1):]
            self._cache[user] = ids + self.sot_seq
        return self._cache[user]

    def target_ids(self, text: str, prefix_len: int) -> list[int]:
        room = min(MAX_TARGET_TOKENS, self.max_len - prefix_len - 1)
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

    def loss(self, examples: list[Example], states):
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

