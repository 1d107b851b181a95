"""faster-whisper backend (the default): CTranslate2 Whisper, batched across clips.

The embedded Whisper base on CPU (int8), any CTranslate2 Whisper such as ``large-v3`` on GPU (float16).
Utterances are already VAD-cut clips of at most 30 s, so the batch is *across utterances*: each clip's
log-Mel window is padded to 30 s, ``batch_size`` windows are encoded in one call, language is detected
per clip from that same encoder output, and all clips are decoded in one batched ``generate``
(temperature fallback only for the clips that fail, word timestamps from one batched ``align``).
``batched: false`` runs ``WhisperModel.transcribe`` clip by clip (the reference path; also used for
clips over 30 s).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.backends.asr.base import (MAX_WINDOW_S, MIN_SAMPLES, N_FRAMES, SAMPLE_RATE, TIME_PRECISION, ASRResult,
                                        build_result, chunks, compression_ratio, last_resort, needs_fallback,
                                        split_segments, to_16k)
from pipeline.core.config import ASRConfig
from pipeline.core.model_cache import resolve


class FasterWhisperBackend:
    """CTranslate2 Whisper. ``transcribe_batch`` batches across clips (see module doc)."""

    name = "faster-whisper"

    @classmethod
    def from_config(cls, cfg: ASRConfig, **context) -> "FasterWhisperBackend":
        return cls(cfg)

    def __init__(self, cfg: ASRConfig):
        from faster_whisper import WhisperModel

        self.cfg = cfg
        self.model_id = cfg.model
        self.model = WhisperModel(resolve(cfg.model), device=cfg.device, compute_type=cfg.compute_type,
                                  cpu_threads=cfg.cpu_threads)
        self._tokenizers: dict[str, object] = {}

    # -- sequential reference path ---------------------------------------------------------------------
    def transcribe_one(self, audio: np.ndarray, language: str | None) -> ASRResult:
        segs, info = self.model.transcribe(
            audio, language=language, beam_size=self.cfg.beam_size, best_of=self.cfg.best_of,
            temperature=list(self.cfg.temperatures), compression_ratio_threshold=self.cfg.compression_ratio_threshold,
            log_prob_threshold=self.cfg.logprob_threshold, no_speech_threshold=self.cfg.no_speech_threshold,
            vad_filter=False, condition_on_previous_text=False, without_timestamps=False,
            word_timestamps=self.cfg.word_timestamps,
        )
        segs = list(segs)
        text = " ".join(s.text.strip() for s in segs).strip()
        dur = np.array([max(s.end - s.start, 1e-3) for s in segs]) if segs else np.array([])
        return build_result(
            text, info.language, info.language_probability,
            float(np.average([s.avg_logprob for s in segs], weights=dur)) if segs else None,
            float(max(s.no_speech_prob for s in segs)) if segs else None,
            [{"start": s.start, "end": s.end, "text": s.text} for s in segs],
            [dataclasses.asdict(w) for s in segs for w in (s.words or [])],
            max(s.temperature for s in segs) if segs else None,
        )

    def transcribe_sequential(self, audios, sample_rate, language=None) -> list[ASRResult]:
        return [self.transcribe_one(a, language) for a in to_16k(audios, sample_rate)]

    # -- batched path ------------------------------------------------------------------------------------
    def _tokenizer(self, language: str):
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                                   task="transcribe", language=language)
        return self._tokenizers[language]

    def _encode(self, feats: np.ndarray):
        """Encoder output of a batch of Mel windows, as (StorageView, numpy array or None).

        On CPU the windows are encoded ``encoder_batch_size`` at a time (default 1: a batch of 8
        windows was 25-30 % slower per clip than one at a time on a 2-core AVX CPU, the attention
        working set falls out of cache) and joined for the batched decoder; on GPU the whole batch at once."""
        import ctranslate2

        m, n = self.model, len(feats)
        if m.model.device != "cpu":
            return m.encode(feats), None
        eb = max(1, self.cfg.encoder_batch_size or 1)
        arr = np.ascontiguousarray(np.concatenate([np.asarray(m.encode(feats[i:i + eb])) for i in range(0, n, eb)]))
        return ctranslate2.StorageView.from_array(arr), arr

    def _take(self, enc, arr: np.ndarray | None, feats: np.ndarray, idx: list[int]):
        """Encoder output rows ``idx`` (re-encoded where the output is not in host memory)."""
        import ctranslate2

        if len(idx) == len(feats):
            return enc, None
        if arr is not None:
            sub = np.ascontiguousarray(arr[idx])
            return ctranslate2.StorageView.from_array(sub), sub  # keep sub alive while the view is used
        return self.model.encode(feats[idx]), None

    def _generate(self, enc, prompts: list[list[int]], suppress: list[int], temperature: float):
        import ctranslate2

        kw = dict(beam_size=self.cfg.beam_size, patience=1.0) if temperature == 0 else dict(
            beam_size=1, num_hypotheses=self.cfg.best_of, sampling_topk=0, sampling_temperature=temperature)
        if temperature > 0:
            ctranslate2.set_random_seed(1234)  # reproducible fallback samples for the same batch
        return self.model.model.generate(
            enc, prompts, length_penalty=1.0, return_scores=True,
            max_length=min(self.model.max_length, len(prompts[0]) + (self.cfg.max_new_tokens or self.model.max_length)),
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=suppress,
            max_initial_timestamp_index=int(round(1.0 / TIME_PRECISION)), **kw)

    def transcribe_batch(self, audios, sample_rate, language=None) -> list[ASRResult]:
        if not len(audios):
            return []
        audios = to_16k(audios, sample_rate)
        if not self.cfg.batched:
            return [self.transcribe_one(a, language) for a in audios]
        out: list[ASRResult | None] = [None] * len(audios)
        for i, a in enumerate(audios):
            if len(a) < MIN_SAMPLES:  # not one Mel frame: nothing to transcribe
                out[i] = ASRResult("", None, None, None, None, 0.0)
        long = [i for i, a in enumerate(audios) if len(a) > MAX_WINDOW_S * SAMPLE_RATE]
        for i in long:  # more than one window: the sequential long-form algorithm
            out[i] = self.transcribe_one(audios[i], language)
        short = sorted((i for i in range(len(audios)) if out[i] is None), key=lambda i: len(audios[i]))
        for idx in chunks(short, self.cfg.batch_size):
            for i, r in zip(idx, self._batch([audios[i] for i in idx], language)):
                out[i] = r
        return out  # type: ignore[return-value]

    def _batch(self, audios: list[np.ndarray], language: str | None) -> list[ASRResult]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        m, cfg, n = self.model, self.cfg, len(audios)
        fe = m.feature_extractor
        raw = [fe(a) for a in audios]  # same features as WhisperModel.transcribe: 160 samples padding, last frame dropped
        sizes = [min(N_FRAMES, f.shape[-1] - 1) for f in raw]
        window = N_FRAMES
        if cfg.encoder_window == "fit":  # shorter encoder input: the batch's longest clip + 1 s, whole seconds
            window = min(N_FRAMES, max(int(cfg.min_window_s * 100), -(-(max(sizes) + 100) // 100) * 100))
        feats = np.stack([pad_or_trim(f[:, :size], window) for f, size in zip(raw, sizes)]).astype(np.float32)
        enc, enc_arr = self._encode(feats)

        if language is None and m.model.is_multilingual:
            det = m.model.detect_language(enc)  # per clip: [(token, prob), ...] best first
            langs = [d[0][0][2:-2] for d in det]
            lprobs = [float(d[0][1]) for d in det]
        else:
            langs = [language if m.model.is_multilingual else "en"] * n
            lprobs = [1.0] * n
        toks = {lang: self._tokenizer(lang) for lang in set(langs)}
        suppress = list(get_suppressed_tokens(next(iter(toks.values())), [-1]))  # the same for every language
        prompts = [m.get_prompt(toks[lang], [], without_timestamps=False) for lang in langs]

        # temperature 0 for everyone, then sampling only for the clips that fail Whisper's checks
        best: list[tuple | None] = [None] * n  # (avg_logprob, tokens, temperature, compression ratio)
        cands: list[list[tuple]] = [[] for _ in range(n)]
        todo = list(range(n))
        no_speech = [None] * n
        for temperature in cfg.temperatures:
            if not todo:
                break
            sub, keep = self._take(enc, enc_arr, feats, todo)
            res = self._generate(sub, [prompts[i] for i in todo], suppress, temperature)
            del keep
            nxt = []
            for i, r in zip(todo, res):
                tokens = r.sequences_ids[0]
                avg_lp = r.scores[0] * len(tokens) / (len(tokens) + 1)
                if no_speech[i] is None:
                    no_speech[i] = float(r.no_speech_prob)  # from the first pass, as in Whisper
                cr = compression_ratio(toks[langs[i]].decode(tokens).strip())
                cands[i].append((avg_lp, tokens, temperature, cr))
                if needs_fallback(cr, avg_lp, no_speech[i], cfg):
                    nxt.append(i)
                else:
                    best[i] = cands[i][-1]
            todo = nxt
        for i in todo:
            best[i] = last_resort(cands[i], cfg)

        segs: list[list[dict]] = []
        for i in range(n):
            tok = toks[langs[i]]
            segs.append(split_segments(best[i][1], tok.timestamp_begin, tok.eot, tok.decode, sizes[i] / m.frames_per_second))
            for s in segs[i]:
                s["seek"] = 0

        words: list[list[dict]] = [[] for _ in range(n)]
        if cfg.word_timestamps:
            for lang in toks:  # alignment uses the language's SOT sequence and word splitting
                idx = [i for i in range(n) if langs[i] == lang and segs[i]]
                if not idx:
                    continue
                sub, keep = self._take(enc, enc_arr, feats, idx)
                group = [segs[i] for i in idx]
                m.add_word_timestamps(group, toks[lang], sub, [sizes[i] for i in idx], "\"'“¿([{-",
                                      "\"'.。,，!！?？:：”)]}、", 0.0)
                del keep
                for i, g in zip(idx, group):
                    words[i] = [w for s in g for w in s.get("words", [])]

        return [build_result(" ".join(s["text"].strip() for s in segs[i]), langs[i], lprobs[i], best[i][0], no_speech[i], segs[i],
                             words[i], best[i][2]) for i in range(n)]
