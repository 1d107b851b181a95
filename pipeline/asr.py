"""ASR pseudo-labels: one small protocol, three Whisper backends, and reject filters with reasons.

Backends (``asr.backend`` in the profile):

- ``faster-whisper`` (default): CTranslate2 Whisper; the embedded Whisper base on CPU (int8), any
  CTranslate2 Whisper such as ``large-v3`` on GPU (float16). Utterances are already VAD-cut clips of
  at most 30 s, so the batch is *across utterances*: each clip's log-Mel window is padded to 30 s,
  ``batch_size`` windows are encoded in one call, language is detected per clip from that same
  encoder output, and all clips are decoded in one batched ``generate`` (temperature fallback only for
  the clips that fail, word timestamps from one batched ``align``). ``batched: false`` runs
  ``WhisperModel.transcribe`` clip by clip (the reference path; also used for clips over 30 s).
- ``openai-whisper``: the reference PyTorch implementation (``whisper.decode`` on a batch of Mel
  windows); loads a model name or a ``.pt`` checkpoint path (``{"dims": ..., "model_state_dict": ...}``).
- ``vllm``: vLLM's Whisper (encoder-decoder) support on GPU; no word timestamps.

Every backend returns one :class:`ASRResult` per clip with text, detected language and probability,
mean token log-prob, no-speech probability, compression ratio, segment and word timestamps.
:func:`check` turns a result into a reject reason (or None); thresholds live in ``ASRConfig``.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from .config import ASRConfig
from .models import resolve
from .textnorm import normalize, wer

SAMPLE_RATE = 16000
N_FRAMES = 3000  # one Whisper window: 30 s of 10 ms Mel frames
TIME_PRECISION = 0.02  # seconds per timestamp token
MAX_WINDOW_S = 30.0
MIN_SAMPLES = 400  # one 25 ms analysis window


@dataclass
class ASRResult:
    text: str
    language: str | None
    language_prob: float | None
    avg_logprob: float | None
    no_speech_prob: float | None
    compression_ratio: float | None
    segments: list[dict] = field(default_factory=list)  # [{start, end, text}] (s, within the clip)
    words: list[dict] = field(default_factory=list)  # [{word, start, end, p}]
    temperature: float | None = None  # decoding temperature that produced the text (> 0: fallback was needed)


class ASRBackend(Protocol):
    name: str
    model_id: str

    def transcribe_batch(self, audios: list[np.ndarray], sample_rate: int, language: str | None = None) -> list[ASRResult]: ...


# ---- shared helpers ---------------------------------------------------------------------------------
def compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return len(b) / len(gzip.compress(b)) if b else 0.0


def _to_16k(audios: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray]:
    if sample_rate == SAMPLE_RATE:
        return [np.ascontiguousarray(a, dtype=np.float32) for a in audios]
    from .audio import resample

    return [np.ascontiguousarray(resample(np.asarray(a, dtype=np.float32), sample_rate, SAMPLE_RATE), dtype=np.float32)
            for a in audios]


def split_segments(tokens: Sequence[int], timestamp_begin: int, eot: int, decode: Callable[[list[int]], str],
                   duration: float) -> list[dict]:
    """Whisper timestamp tokens -> segments [{start, end, text, tokens}] (times in s, within the window).

    ``<|t0|> text <|t1|>`` is one segment; a text run with no closing timestamp ends at ``duration``;
    tokens without any timestamp make one segment over the whole clip."""
    segs: list[dict] = []
    start: float | None = None
    text_toks: list[int] = []
    any_ts = False
    for t in tokens:
        if t >= timestamp_begin:
            any_ts = True
            ts = (t - timestamp_begin) * TIME_PRECISION
            if text_toks:
                segs.append({"start": start if start is not None else 0.0, "end": ts, "tokens": text_toks})
                text_toks = []
                start = None
            else:
                start = ts
        elif t < eot:
            text_toks.append(t)
    if text_toks:
        segs.append({"start": start if start is not None else 0.0, "end": duration, "tokens": text_toks})
    out = []
    for s in segs:
        text = decode(s["tokens"])
        if not text.strip():
            continue
        end = min(max(s["end"], s["start"]), max(duration, s["start"]))
        out.append({"start": s["start"], "end": end, "text": text, "tokens": s["tokens"]})
    return out


def _last_resort(cands: list, cfg: ASRConfig, cr=lambda c: c[3], logprob=lambda c: c[0]):
    """Every temperature failed: the most likely candidate that is not too repetitive (else the most likely)."""
    ok = [c for c in cands if cr(c) <= cfg.compression_ratio_threshold] or cands
    return max(ok, key=logprob)


def _needs_fallback(cr: float, avg_logprob: float, no_speech: float | None, cfg: ASRConfig) -> bool:
    """Whisper's temperature-fallback rule: too repetitive or too unlikely, unless it is silence."""
    bad = cr > cfg.compression_ratio_threshold or avg_logprob < cfg.logprob_threshold
    silent = no_speech is not None and no_speech > cfg.no_speech_threshold and avg_logprob < cfg.logprob_threshold
    return bad and not silent


def _result(text: str, language, language_prob, avg_logprob, no_speech, segments: list[dict], words: list[dict],
            temperature) -> ASRResult:
    text = text.strip()
    return ASRResult(
        text=text, language=language, language_prob=None if language_prob is None else float(language_prob),
        avg_logprob=None if avg_logprob is None else float(avg_logprob),
        no_speech_prob=None if no_speech is None else float(no_speech),
        compression_ratio=compression_ratio(text),
        segments=[{"start": round(float(s["start"]), 2), "end": round(float(s["end"]), 2), "text": s["text"].strip()}
                  for s in segments if s["text"].strip()],
        words=[{"word": w["word"].strip(), "start": round(float(w["start"]), 2), "end": round(float(w["end"]), 2),
                "p": round(float(w["probability"]), 3)} for w in words if w["word"].strip()],
        temperature=None if temperature is None else float(temperature),
    )


def _chunks(order: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(order), max(1, size)):
        yield order[i:i + max(1, size)]


# ---- faster-whisper ---------------------------------------------------------------------------------------
class FasterWhisperBackend:
    """CTranslate2 Whisper. ``transcribe_batch`` batches across clips (see module doc)."""

    name = "faster-whisper"

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
        return _result(
            text, info.language, info.language_probability,
            float(np.average([s.avg_logprob for s in segs], weights=dur)) if segs else None,
            float(max(s.no_speech_prob for s in segs)) if segs else None,
            [{"start": s.start, "end": s.end, "text": s.text} for s in segs],
            [dataclasses.asdict(w) for s in segs for w in (s.words or [])],
            max(s.temperature for s in segs) if segs else None,
        )

    def transcribe_sequential(self, audios, sample_rate, language=None) -> list[ASRResult]:
        return [self.transcribe_one(a, language) for a in _to_16k(audios, sample_rate)]

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
        audios = _to_16k(audios, sample_rate)
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
        for idx in _chunks(short, self.cfg.batch_size):
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
                if _needs_fallback(cr, avg_lp, no_speech[i], cfg):
                    nxt.append(i)
                else:
                    best[i] = cands[i][-1]
            todo = nxt
        for i in todo:
            best[i] = _last_resort(cands[i], cfg)

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

        return [_result(" ".join(s["text"].strip() for s in segs[i]), langs[i], lprobs[i], best[i][0], no_speech[i], segs[i],
                        words[i], best[i][2]) for i in range(n)]


# ---- openai-whisper ----------------------------------------------------------------------------------------
class OpenAIWhisperBackend:
    """The reference PyTorch Whisper (``pip install --no-deps openai-whisper``): batched ``whisper.decode``."""

    name = "openai-whisper"

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
        audios = _to_16k(audios, sample_rate)
        out: list[ASRResult | None] = [None] * len(audios)
        for i, a in enumerate(audios):
            if len(a) < MIN_SAMPLES:
                out[i] = ASRResult("", None, None, None, None, 0.0)
        order = sorted((i for i in range(len(audios)) if out[i] is None), key=lambda i: len(audios[i]))
        for idx in _chunks(order, self.cfg.batch_size):
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
                    if _needs_fallback(r.compression_ratio, r.avg_logprob, no_speech[i], cfg):
                        nxt.append(i)
                    else:
                        best[i] = r
            todo = nxt
        for i in todo:
            best[i] = _last_resort(cands[i], cfg, cr=lambda c: c.compression_ratio, logprob=lambda c: c.avg_logprob)

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
            results.append(_result(" ".join(s["text"].strip() for s in segs), lang, lprobs[i], r.avg_logprob, no_speech[i], segs,
                                   [w for s in segs for w in s.get("words", [])], r.temperature))
        return results


# ---- vLLM (GPU) --------------------------------------------------------------------------------------------------
class VLLMWhisperBackend:
    """vLLM's encoder-decoder Whisper (``openai/whisper-large-v3`` etc.) on GPU; install with ``pip install .[gpu]``.

    One forced 1-token step after ``<|startoftranscript|>`` gives the no-speech probability (the forced
    token's raw log-prob) and the language distribution (language tokens among the top log-probs at
    that position, renormalised, as Whisper's softmax over language tokens); then one batched
    ``generate`` with timestamps per clip. vLLM exposes no cross-attention, so there are no word
    timestamps (``words`` stays empty).
    """

    name = "vllm"

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
        audios = [a[: int(MAX_WINDOW_S * SAMPLE_RATE)] for a in _to_16k(audios, sample_rate)]
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
                if _needs_fallback(cr, avg_lp, no_speech[i], cfg):
                    nxt.append(i)
                else:
                    best[i] = cands[i][-1]
            todo = nxt
        for i in todo:
            best[i] = _last_resort(cands[i], cfg)
        results = []
        for i in range(n):
            segs = split_segments(best[i][1], self.ts_begin, self.eot, self._decode, len(audios[i]) / SAMPLE_RATE)
            results.append(_result(" ".join(s["text"].strip() for s in segs), langs[i], lprobs[i], best[i][0], no_speech[i],
                                   segs, [], best[i][2]))
        return results


def load_asr(cfg: ASRConfig) -> ASRBackend:
    if cfg.backend == "faster-whisper":
        return FasterWhisperBackend(cfg)
    if cfg.backend == "openai-whisper":
        return OpenAIWhisperBackend(cfg)
    if cfg.backend == "vllm":
        return VLLMWhisperBackend(cfg)
    raise ValueError(f"unknown ASR backend {cfg.backend!r}")


# ---- filters ---------------------------------------------------------------------------------------------------
# Phrases Whisper writes on silence, music or noise (subtitle credits and video outros from its web
# training data). Anywhere in the text they mark a hallucination.
FILLER_PHRASES = (
    "subtitles by", "subtitled by", "captions by", "captioned by", "captioning by", "transcribed by",
    "transcription by", "transcript by", "translated by", "translation by", "amara org", "thanks for watching",
    "thank you for watching", "thank you so much for watching", "please subscribe", "like and subscribe",
    "subscribe to my channel", "subscribe to our channel", "don't forget to subscribe", "see you in the next video",
    "untertitel im auftrag des zdf", "untertitel der amara org community", "untertitelung des zdf",
    "untertitel von stephanie geiges", "vielen dank fürs zuschauen", "sous titrage st' 501", "sous titres réalisés par",
    "sous titrage société radio canada", "merci d'avoir regardé", "subtítulos realizados por la comunidad de amara org",
    "subtítulos por la comunidad de amara org", "gracias por ver", "sottotitoli creati dalla comunità amara org",
    "sottotitoli a cura di", "ondertitels ingediend door de amara org gemeenschap", "редактор субтитров",
    "субтитры сделал", "субтитры создавал", "продолжение следует", "ご視聴ありがとうございました", "字幕由amara org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目", "mbc 뉴스", "시청해주셔서 감사합니다",
)
# Short outputs that are hallucinations when they are the whole transcript of a clip.
WHOLE_FILLERS = ("you", "thank you", "thank you very much", "thanks", "bye", "bye bye", "the end", "music",
                 "applause", "silence", "laughter", "so", "oh", "hmm", "ah", "um", "uh")
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫♬*]+")
_NO_SPACE_LANGS = {"zh", "ja", "th", "lo", "my", "yue", "km", "bo"}


def _length_units(text: str, language: str | None) -> float:
    """Words, or characters / 2 for languages written without spaces."""
    if (language or "") in _NO_SPACE_LANGS:
        return len(re.sub(r"\s+", "", text)) / 2.0
    return float(len(text.split()))


def max_ngram_repeat(words: Sequence[str], max_n: int = 6) -> tuple[int, str]:
    """Longest back-to-back repetition of one n-gram (n = 1..max_n): (times, ngram)."""
    best, what = 1, ""
    L = len(words)
    for n in range(1, min(max_n, L // 2) + 1):
        for i in range(L - n):
            k, j = 1, i + n
            while j + n <= L and words[j:j + n] == words[i:i + n]:
                k, j = k + 1, j + n
            if k > best:
                best, what = k, " ".join(words[i:i + n])
    return best, what


def _filler(text: str, cfg: ASRConfig) -> str | None:
    norm = normalize(text)
    phrases = FILLER_PHRASES if cfg.hallucination_phrases is None else tuple(cfg.hallucination_phrases)
    padded = f" {norm} "
    for p in phrases:
        q = normalize(p)
        if q and (f" {q} " in padded or (not q.isascii() and q in norm)):
            return p
    core = normalize(_NON_SPEECH.sub(" ", text))
    if not core:
        return "only non-speech annotations"
    if core in WHOLE_FILLERS or (len(set(core.split())) == 1 and core.split()[0] in WHOLE_FILLERS):
        return core
    return None


def _lang(code: str | None) -> str | None:
    if not code:
        return None
    c = code.split("-")[0].split("_")[0].lower()
    return {"jw": "jv"}.get(c, c)


def check(result: ASRResult, duration_s: float, expected_language: str | None,
          cfg: ASRConfig | None = None) -> tuple[str, str] | None:
    """Reject filters; returns (reason, detail) or None when the pseudo-label is kept.

    Reasons: asr_no_speech, asr_empty, language_mismatch, asr_filler_phrase, asr_repetitive,
    asr_low_confidence, asr_too_long, asr_too_short (thresholds in ``ASRConfig``)."""
    cfg = cfg or ASRConfig()
    text = result.text.strip()
    words = normalize(text).split()
    ns, lp = result.no_speech_prob, result.avg_logprob
    if ns is not None and ns > cfg.no_speech_threshold and (not words or (lp is not None and lp < cfg.logprob_threshold)):
        return "asr_no_speech", f"no_speech_prob {ns:.2f} > {cfg.no_speech_threshold} with avg_logprob " + (
            f"{lp:.2f} < {cfg.logprob_threshold}" if lp is not None else "n/a")
    if not words:
        return "asr_empty", "ASR produced no text"
    exp, got = _lang(expected_language), _lang(result.language)
    if exp and got and got != exp and (result.language_prob or 0) >= cfg.min_language_prob:
        return "language_mismatch", f"detected {result.language} (p={result.language_prob:.2f}), profile is {expected_language}"
    filler = _filler(text, cfg)
    if filler:
        return "asr_filler_phrase", f"Whisper filler/hallucination phrase {filler!r} in {text[:120]!r}"
    reps, gram = max_ngram_repeat(words)
    if reps > cfg.max_ngram_repeats:
        return "asr_repetitive", f"{gram!r} repeated {reps} times in a row (> {cfg.max_ngram_repeats})"
    cr = result.compression_ratio if result.compression_ratio is not None else compression_ratio(text)
    if cr > cfg.compression_ratio_threshold:
        return "asr_repetitive", f"compression ratio {cr:.2f} > {cfg.compression_ratio_threshold} (looping hallucination)"
    if lp is not None and lp < cfg.min_avg_logprob:
        return "asr_low_confidence", f"avg_logprob {lp:.2f} < {cfg.min_avg_logprob}"
    units, dur = _length_units(text, result.language), max(duration_s, 0.1)
    if units / dur > cfg.max_words_per_s:
        return "asr_too_long", f"{units:g} words in {duration_s:.1f} s ({units / dur:.1f}/s > {cfg.max_words_per_s}/s): faster than speech"
    if duration_s >= cfg.min_duration_for_rate_s and units / dur < cfg.min_words_per_s:
        return "asr_too_short", f"{units:g} words in {duration_s:.1f} s ({units / dur:.2f}/s < {cfg.min_words_per_s}/s)"
    return None


# ---- scores and columns ---------------------------------------------------------------------------------------
def cer(reference: str | None, hypothesis: str | None) -> float | None:
    """Character error rate (jiwer) on normalised text; None when there is no usable reference."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return None
    return float(jiwer.cer(ref, hyp if hyp else "<empty>"))


def summarize_wer(rows) -> dict:
    """WER/CER over a table (pyarrow Table, list of row dicts, or a datasets/pandas-like object with
    ``reference_text`` and ``asr_text``), for the manifest and report.

    ``corpus_wer``/``corpus_cer`` are total edits over total reference words/characters (what papers
    report); ``mean_*``/``median_wer`` are over utterances; only rows with a reference count."""
    import jiwer

    if hasattr(rows, "to_pylist"):
        rows = rows.select([c for c in ("reference_text", "asr_text") if c in rows.column_names]).to_pylist()
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        rows = rows.to_dict("records")
    rows = list(rows)
    pairs = [(normalize(r.get("reference_text")), normalize(r.get("asr_text")) or "<empty>") for r in rows]
    pairs = [(ref, hyp) for ref, hyp in pairs if ref]
    out: dict = {"utterances": len(rows), "with_reference": len(pairs)}
    if not pairs:
        return {**out, "corpus_wer": None, "corpus_cer": None, "mean_wer": None, "median_wer": None, "mean_cer": None,
                "share_exact": None}
    refs, hyps = [p[0] for p in pairs], [p[1] for p in pairs]
    w = np.array([jiwer.wer(r, h) for r, h in pairs])
    c = np.array([jiwer.cer(r, h) for r, h in pairs])
    return {**out, "corpus_wer": round(float(jiwer.wer(refs, hyps)), 4), "corpus_cer": round(float(jiwer.cer(refs, hyps)), 4),
            "mean_wer": round(float(w.mean()), 4), "median_wer": round(float(np.median(w)), 4),
            "mean_cer": round(float(c.mean()), 4), "share_exact": round(float((w == 0).mean()), 4)}


def result_columns(r: ASRResult, backend: ASRBackend, reference: str | None) -> dict:
    return {
        "asr_text": r.text, "asr_language": r.language, "asr_language_prob": r.language_prob,
        "asr_avg_logprob": r.avg_logprob, "asr_no_speech_prob": r.no_speech_prob,
        "asr_compression_ratio": r.compression_ratio, "asr_segments_json": json.dumps(r.segments, ensure_ascii=False),
        "asr_words_json": json.dumps(r.words, ensure_ascii=False),
        "asr_model": f"{backend.name}:{backend.model_id}", "wer": wer(reference, r.text), "cer": cer(reference, r.text),
    }
