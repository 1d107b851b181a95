"""openai-whisper backend: the reference PyTorch Whisper, ``whisper.decode`` on a batch of Mel windows.

Loads a model name or a ``.pt`` checkpoint path (``{"dims": ..., "model_state_dict": ...}``).
"""
from __future__ import annotations

import numpy as np

from pipeline.backends.asr.base import (MAX_WINDOW_S, MIN_SAMPLES, N_FRAMES, SAMPLE_RATE, ASRResult, build_result,
                                        chunks, last_resort, needs_fallback, split_segments, to_16k)
from pipeline.core.config import ASRConfig
from pipeline.core.model_cache import resolve


class OpenAIWhisperBackend:
    """The reference PyTorch Whisper (``pip install --no-deps openai-whisper``): batched ``whisper.decode``."""

    name = "openai-whisper"

    @classmethod
    def from_config(cls, cfg: ASRConfig, **context) -> "OpenAIWhisperBackend":
        return cls(cfg)

    def __init__(self, cfg: ASRConfig):
        import torch
        import whisper

        self.cfg = cfg
        self.model_id = cfg.model
        device = cfg.device if cfg.device != "cuda" or torch.cuda.is_available() else "cpu"
        self.model = whisper.load_model(resolve(cfg.model), device=device)
        self.device = device
        self.fp16 = device.startswith("cuda") and cfg.compute_type in ("float16", "int8_float16", "auto", "default")
        if device == "cpu":
            torch.set_num_threads(max(1, cfg.cpu_threads))

    def _tokenizer(self, language: str | None):
        from whisper.tokenizer import get_tokenizer

        return get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages,
                             language=language or "en", task="transcribe")

    def transcribe_batch(self, audios, sample_rate, language=None) -> list[ASRResult]:
        if not len(audios):
            return []
        audios = to_16k(audios, sample_rate)
        out: list[ASRResult | None] = [None] * len(audios)
        for i, a in enumerate(audios):
            if len(a) < MIN_SAMPLES:
                out[i] = ASRResult("", None, None, None, None, 0.0)
        order = sorted((i for i in range(len(audios)) if out[i] is None), key=lambda i: len(audios[i]))
        for idx in chunks(order, self.cfg.batch_size):
            for i, r in zip(idx, self._batch([audios[i][: int(MAX_WINDOW_S * SAMPLE_RATE)] for i in idx], language)):
                out[i] = r
        return out  # type: ignore[return-value]

    def _batch(self, audios: list[np.ndarray], language: str | None) -> list[ASRResult]:
        import torch
        import whisper
        from whisper.timing import add_word_timestamps

        cfg, model, n = self.cfg, self.model, len(audios)
        mels, sizes = [], []
        for a in audios:
            mel = whisper.log_mel_spectrogram(torch.from_numpy(a), n_mels=model.dims.n_mels, padding=whisper.audio.N_SAMPLES)
            size = min(N_FRAMES, mel.shape[-1] - N_FRAMES)  # as in whisper.transcribe: the clip's own frames
            sizes.append(size)
            mels.append(whisper.pad_or_trim(mel[:, :size], N_FRAMES))
        mel = torch.stack(mels).to(model.device)
        with torch.no_grad():
            feats = model.embed_audio(mel.half() if self.fp16 else mel)  # encoded once: whisper.decode takes features
            if language is None and model.is_multilingual:
                _, probs = model.detect_language(feats)
                langs = [max(p, key=p.get) for p in probs]
                lprobs = [float(p[lang]) for p, lang in zip(probs, langs)]
            else:
                langs = [language if model.is_multilingual else "en"] * n
                lprobs = [1.0] * n
        best: list = [None] * n
        cands: list[list] = [[] for _ in range(n)]
        no_speech: list = [None] * n
        todo = list(range(n))
        for temperature in cfg.temperatures:
            if not todo:
                break
            nxt = []
            for lang in sorted({langs[i] for i in todo}):
                group = [i for i in todo if langs[i] == lang]
                opts = whisper.DecodingOptions(
                    task="transcribe", language=lang, without_timestamps=False, fp16=self.fp16, max_initial_timestamp=1.0,
                    sample_len=cfg.max_new_tokens, temperature=temperature,
                    beam_size=cfg.beam_size if temperature == 0 and cfg.beam_size > 1 else None,
                    best_of=cfg.best_of if temperature > 0 else None)
                with torch.no_grad():
                    if (opts.beam_size or opts.best_of or 1) > 1:
                        # whisper.decode does not repeat the audio features per beam/sample (20250625), which only
                        # broadcasts for one clip: decode those clips one at a time
                        res = [whisper.decode(model, feats[i], opts) for i in group]
                    else:
                        res = whisper.decode(model, feats[group], opts)
                for i, r in zip(group, res):
                    if no_speech[i] is None:
                        no_speech[i] = float(r.no_speech_prob)  # from the first pass, as in Whisper
                    cands[i].append(r)
                    if needs_fallback(r.compression_ratio, r.avg_logprob, no_speech[i], cfg):
                        nxt.append(i)
                    else:
                        best[i] = r
            todo = nxt
        for i in todo:
            best[i] = last_resort(cands[i], cfg, cr=lambda c: c.compression_ratio, logprob=lambda c: c.avg_logprob)

        results = []
        for i in range(n):
            r, lang = best[i], langs[i]
            tok = self._tokenizer(lang)
            segs = split_segments(r.tokens, tok.timestamp_begin, tok.eot, tok.decode, sizes[i] / 100.0)
            for s in segs:
                s["seek"] = 0
            if cfg.word_timestamps and segs:
                add_word_timestamps(segments=segs, model=model, tokenizer=tok, mel=mel[i], num_frames=sizes[i],
                                    last_speech_timestamp=0.0)
            results.append(build_result(" ".join(s["text"].strip() for s in segs), lang, lprobs[i], r.avg_logprob, no_speech[i], segs,
                                        [w for s in segs for w in s.get("words", [])], r.temperature))
        return results
