"""vllm backend: vLLM's Whisper (encoder-decoder) support on GPU; no word timestamps."""
from __future__ import annotations

import math

import numpy as np

from pipeline.backends.asr.base import (MAX_WINDOW_S, MIN_SAMPLES, SAMPLE_RATE, ASRResult, build_result,
                                        compression_ratio, last_resort, needs_fallback, split_segments, to_16k)
from pipeline.core.config import ASRConfig
from pipeline.core.model_cache import resolve


class VLLMWhisperBackend:
    """vLLM's encoder-decoder Whisper (``openai/whisper-large-v3`` etc.) on GPU; install with ``pip install .[gpu]``.

    One forced 1-token step after ``<|startoftranscript|>`` gives the no-speech probability (the forced
    token's raw log-prob) and the language distribution (language tokens among the top log-probs at
    that position, renormalised, as Whisper's softmax over language tokens); then one batched
    ``generate`` with timestamps per clip. vLLM exposes no cross-attention, so there are no word
    timestamps (``words`` stays empty).
    """

    name = "vllm"

    @classmethod
    def from_config(cls, cfg: ASRConfig, **context) -> "VLLMWhisperBackend":
        return cls(cfg)

    def __init__(self, cfg: ASRConfig):
        from faster_whisper.tokenizer import _LANGUAGE_CODES
        from vllm import LLM

        self.cfg = cfg
        self.model_id = cfg.model
        kw = dict(model=resolve(cfg.model), max_model_len=448, max_num_seqs=max(1, cfg.batch_size),
                  limit_mm_per_prompt={"audio": 1}, gpu_memory_utilization=cfg.gpu_memory_utilization,
                  dtype="half" if cfg.compute_type in ("float16", "int8_float16") else "auto")
        try:  # log-probs of the model itself, not of the processed (masked) distribution (vLLM >= 0.10.2)
            self.llm = LLM(**kw, logprobs_mode="raw_logprobs")
            self.raw_logprobs = True
        except TypeError:
            self.llm = LLM(**kw)
            self.raw_logprobs = False
        tok = self.llm.get_tokenizer()
        self.tok = tok
        ids = {c: tok.convert_tokens_to_ids(f"<|{c}|>") for c in _LANGUAGE_CODES}
        self.lang_ids = {i: c for c, i in ids.items() if i is not None and i != tok.unk_token_id}
        self.eot = tok.convert_tokens_to_ids("<|endoftext|>")
        self.ts_begin = tok.convert_tokens_to_ids("<|0.00|>")
        ns = [tok.convert_tokens_to_ids(t) for t in ("<|nospeech|>", "<|nocaptions|>")]
        self.no_speech_id = next(i for i in ns if i is not None and i != tok.unk_token_id)

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i < self.eot])

    def _prompt(self, audio: np.ndarray, decoder: str) -> dict:
        return {"encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (audio, SAMPLE_RATE)}},
                "decoder_prompt": decoder}

    def transcribe_batch(self, audios, sample_rate, language=None) -> list[ASRResult]:
        audios = [a[: int(MAX_WINDOW_S * SAMPLE_RATE)] for a in to_16k(audios, sample_rate)]
        out = [ASRResult("", None, None, None, None, 0.0) for _ in audios]
        idx = [i for i, a in enumerate(audios) if len(a) >= MIN_SAMPLES]
        if idx:  # vLLM schedules and batches all requests itself (max_num_seqs = batch_size)
            for i, r in zip(idx, self._run([audios[i] for i in idx], language)):
                out[i] = r
        return out

    def _run(self, audios: list[np.ndarray], language: str | None) -> list[ASRResult]:
        from vllm import SamplingParams

        cfg = self.cfg
        n = len(audios)
        sot = [self._prompt(a, "<|startoftranscript|>") for a in audios]
        no_speech: list = [None] * n
        dists: list[dict] = [{} for _ in range(n)]
        if self.raw_logprobs:  # one forced step: the raw log-probs after SOT give no-speech and language
            first = self.llm.generate(sot, SamplingParams(temperature=0.0, max_tokens=1, logprobs=20,
                                                          allowed_token_ids=[self.no_speech_id]), use_tqdm=False)
            for i, o in enumerate(first):
                lp = o.outputs[0].logprobs[0] if o.outputs[0].logprobs else {}
                if self.no_speech_id in lp:
                    no_speech[i] = math.exp(lp[self.no_speech_id].logprob)
                dists[i] = {self.lang_ids[t]: math.exp(v.logprob) for t, v in lp.items() if t in self.lang_ids}
        if language is None and not self.raw_logprobs:  # processed log-probs over language tokens only
            first = self.llm.generate(sot, SamplingParams(temperature=0.0, max_tokens=1, logprobs=20,
                                                          allowed_token_ids=list(self.lang_ids)), use_tqdm=False)
            for i, o in enumerate(first):
                lp = o.outputs[0].logprobs[0] if o.outputs[0].logprobs else {}
                dists[i] = {self.lang_ids[t]: math.exp(v.logprob) for t, v in lp.items() if t in self.lang_ids}
        langs, lprobs = [], []
        for d in dists:
            if language:
                langs.append(language)
                lprobs.append(1.0)
            elif d:
                lang = max(d, key=d.get)
                langs.append(lang)
                lprobs.append(d[lang] / sum(d.values()))  # Whisper: softmax over the language tokens
            else:
                langs.append("en")
                lprobs.append(None)
        prompts = [self._prompt(a, f"<|startoftranscript|><|{lang}|><|transcribe|>") for a, lang in zip(audios, langs)]
        best: list = [None] * n
        cands: list[list] = [[] for _ in range(n)]
        todo = list(range(n))
        for temperature in cfg.temperatures:
            if not todo:
                break
            sp = SamplingParams(temperature=temperature, max_tokens=min(440, cfg.max_new_tokens or 440), logprobs=0,
                                skip_special_tokens=False,
                                n=1 if temperature == 0 else cfg.best_of, seed=0)
            outs = self.llm.generate([prompts[i] for i in todo], sp, use_tqdm=False)
            nxt = []
            for i, o in zip(todo, outs):
                c = max(o.outputs, key=lambda x: (x.cumulative_logprob or 0.0) / (len(x.token_ids) + 1))
                ids = list(c.token_ids)
                avg_lp = (c.cumulative_logprob or 0.0) / (len(ids) + 1)
                cr = compression_ratio(self._decode(ids).strip())
                cands[i].append((avg_lp, ids, temperature, cr))
                if needs_fallback(cr, avg_lp, no_speech[i], cfg):
                    nxt.append(i)
                else:
                    best[i] = cands[i][-1]
            todo = nxt
        for i in todo:
            best[i] = last_resort(cands[i], cfg)
        results = []
        for i in range(n):
            segs = split_segments(best[i][1], self.ts_begin, self.eot, self._decode, len(audios[i]) / SAMPLE_RATE)
            results.append(build_result(" ".join(s["text"].strip() for s in segs), langs[i], lprobs[i], best[i][0], no_speech[i],
                                        segs, [], best[i][2]))
        return results
