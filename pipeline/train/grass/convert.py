"""A CTranslate2 Whisper (faster-whisper's format, e.g. the embedded Whisper base) -> a transformers
``WhisperForConditionalGeneration`` directory, offline, so the GRASS variant can fine-tune real weights.

``model.bin`` is CTranslate2's own container (ctranslate2/specs/model_spec.py ``_serialize``): a version, the
spec name, a revision, then each variable as (name, rank, dims, dtype id, byte count, bytes), then aliases.
The Whisper spec's names map one to one onto transformers' (self-attention q/k/v are fused into one
``linear_0``; the cross-attention's k/v into ``linear_1``; k has no bias in transformers, a zero one here).
The tokenizer is built offline from openai-whisper's BPE ranks (tokenizer.whisper_tokenizer_from_openai), the
feature extractor is transformers' default for the model's mel bins.

``hf_dir_for_ct2("embedded:whisper-base-ct2")`` converts once into the model cache (``<name>.hf``) and returns
that directory; later calls return it at once.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from pipeline.core.model_cache import EMBEDDED_PREFIX, cache_dir, resolve
from pipeline.train.common import TrainError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5: bfloat16 (not handled)


def read_ct2(path: str | Path) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(spec name, {variable: array}, {alias: variable}) of a CTranslate2 model.bin."""
    with open(path, "rb") as f:
        def num(fmt: str):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return f.read(num("H"))[:-1].decode("utf-8")

        version = num("I")
        if version < 5:
            raise TrainError(f"{path}: CTranslate2 binary version {version} is not supported (>= 5)")
        name, _revision, n = string(), num("I"), num("I")
        out: dict[str, np.ndarray] = {}
        for _ in range(n):
            key = string()
            dims = [num("I") for _ in range(num("B"))]
            dtype, nbytes = num("B"), num("I")
            raw = f.read(nbytes)
            if dtype not in _DTYPES:
                raise TrainError(f"{path}: variable {key} has dtype id {dtype} (bfloat16?), not handled")
            out[key] = np.frombuffer(raw, dtype=_DTYPES[dtype]).reshape(dims)
        aliases = {string(): string() for _ in range(num("I"))}
    return name, out, aliases


def _linear(sd: dict, v: dict, src: str, dst: str) -> None:
    sd[f"{dst}.weight"], sd[f"{dst}.bias"] = v[f"{src}/weight"], v[f"{src}/bias"]


def _norm(sd: dict, v: dict, src: str, dst: str) -> None:
    sd[f"{dst}.weight"], sd[f"{dst}.bias"] = v[f"{src}/gamma"], v[f"{src}/beta"]


def _attention(sd: dict, v: dict, src: str, layer: str, attn: str, fused: int) -> None:
    """fused=3: self-attention (q,k,v in linear_0, out linear_1); fused=2: cross-attention (q linear_0, k,v linear_1,
    out linear_2)."""
    if fused == 3:
        w, b = np.split(v[f"{src}/linear_0/weight"], 3), np.split(v[f"{src}/linear_0/bias"], 3)
        out = f"{src}/linear_1"
    else:
        kw, kb = np.split(v[f"{src}/linear_1/weight"], 2), np.split(v[f"{src}/linear_1/bias"], 2)
        w, b = [v[f"{src}/linear_0/weight"], *kw], [v[f"{src}/linear_0/bias"], *kb]
        out = f"{src}/linear_2"
    dst = f"{layer}.{attn}"
    for name, wi, bi in zip(("q_proj", "k_proj", "v_proj"), w, b):
        sd[f"{dst}.{name}.weight"] = wi
        if name != "k_proj":
            sd[f"{dst}.{name}.bias"] = bi
        elif np.abs(bi).max() > 0:
            raise TrainError(f"{src}: a non-zero key bias has no place in transformers' Whisper")
    _linear(sd, v, out, f"{dst}.out_proj")
    _norm(sd, v, f"{src}/layer_norm", f"{layer}.{attn}_layer_norm")


def _layers(v: dict, side: str) -> int:
    return len({k.split("/")[1] for k in v if re.match(rf"{side}/layer_\d+/", k)})


def state_dict_from_ct2(v: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    """(transformers state dict of WhisperForConditionalGeneration, WhisperConfig kwargs) from the variables."""
    sd: dict[str, np.ndarray] = {}
    for c in ("conv1", "conv2"):
        sd[f"model.encoder.{c}.weight"], sd[f"model.encoder.{c}.bias"] = v[f"encoder/{c}/weight"], v[f"encoder/{c}/bias"]
    sd["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    sd["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    sd["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for side in ("encoder", "decoder"):
        _norm(sd, v, f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(_layers(v, side)):
            src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            _attention(sd, v, f"{src}/self_attention", dst, "self_attn", 3)
            if side == "decoder":
                _attention(sd, v, f"{src}/attention", dst, "encoder_attn", 2)
            _linear(sd, v, f"{src}/ffn/linear_0", f"{dst}.fc1")
            _linear(sd, v, f"{src}/ffn/linear_1", f"{dst}.fc2")
            _norm(sd, v, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    vocab, d = v["decoder/embeddings/weight"].shape
    ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    cfg = {"vocab_size": int(vocab), "d_model": int(d), "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
           "encoder_layers": _layers(v, "encoder"), "decoder_layers": _layers(v, "decoder"),
           "encoder_attention_heads": int(v["encoder/num_heads"]), "decoder_attention_heads": int(v["decoder/num_heads"]),
           "encoder_ffn_dim": int(ffn), "decoder_ffn_dim": int(ffn),
           "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
           "max_target_positions": int(v["decoder/position_encodings/encodings"].shape[0]), "tie_word_embeddings": True}
    return sd, cfg


def convert_ct2(src: str | Path, out: str | Path) -> Path:
    """Write a transformers Whisper directory (safetensors, float32 weights, processor) converted from ``src``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from pipeline.train.grass.tokenizer import whisper_tokenizer_from_openai

    src, out = Path(src), Path(out)
    name, v, aliases = read_ct2(src / "model.bin")
    if name != "WhisperSpec":
        raise TrainError(f"{src}/model.bin is a {name}, not a Whisper model")
    sd, kw = state_dict_from_ct2(v)
    ct2cfg = json.loads((src / "config.json").read_text()) if (src / "config.json").exists() else {}
    multilingual = kw["vocab_size"] >= 51865
    config = WhisperConfig(**kw, suppress_tokens=ct2cfg.get("suppress_ids"), begin_suppress_tokens=ct2cfg.get("suppress_ids_begin"),
                           decoder_start_token_id=50258 if multilingual else 50257)
    model = WhisperForConditionalGeneration(config)
    tensors = {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in sd.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to decoder.embed_tokens
    if missing or unexpected:
        raise TrainError(f"conversion of {src}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    n_lang = len(ct2cfg.get("lang_ids") or []) or 99
    tok = whisper_tokenizer_from_openai(multilingual, num_languages=n_lang)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=kw["num_mel_bins"]), tokenizer=tok).save_pretrained(tmp)
    (tmp / "SOURCE.json").write_text(json.dumps({"ct2": str(src), "aliases": aliases, "note": "converted from CTranslate2 "
                                                 "(float16 weights stored as float32) by pipeline.train.grass.convert"}))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def hf_dir_for_ct2(ref: str) -> Path:
    """An embedded / local CTranslate2 Whisper converted once to transformers (next to the model cache)."""
    src = Path(resolve(ref))
    name = ref[len(EMBEDDED_PREFIX):] if ref.startswith(EMBEDDED_PREFIX) else src.name
    out = cache_dir() / f"{name}.hf"
    if (out / "config.json").exists() and (out / "SOURCE.json").exists():
        return out
    return convert_ct2(src, out)


def is_ct2(ref: str) -> bool:
    return ref.startswith(EMBEDDED_PREFIX) or (Path(ref).is_dir() and (Path(ref) / "model.bin").exists())


def compare_with_ct2(hf_dir: str | Path, ct2_dir: str | Path, audios: list[np.ndarray], language: str = "en",
                     max_tokens: int = 120) -> list[dict]:
    """Check a conversion against CTranslate2 itself (float32 compute) on some clips: per clip the encoder output's
    max abs difference and cosine similarity, and both greedy transcripts (prompt <|sot|><|lang|><|transcribe|>
    <|notimestamps|>, no token suppression, plain argmax) with their token ids. Same log-mel input to both."""
    import ctranslate2
    import torch
    from faster_whisper import WhisperModel
    from faster_whisper.audio import pad_or_trim
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    wm = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=2)
    model = WhisperForConditionalGeneration.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    tok = WhisperTokenizer.from_pretrained(str(hf_dir))
    prompt = tok.convert_tokens_to_ids(["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"])
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    out = []
    for audio in audios:
        feats = pad_or_trim(wm.feature_extractor(audio))[None].astype(np.float32)
        ct_enc = np.asarray(wm.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=True), dtype=np.float32)
        ct_ids = wm.model.generate(ctranslate2.StorageView.from_array(feats), [prompt], beam_size=1, suppress_blank=False,
                                   suppress_tokens=[], max_length=max_tokens + len(prompt))[0].sequences_ids[0]
        with torch.no_grad():
            enc = model.model.encoder(torch.from_numpy(feats)).last_hidden_state
            ids, past, step = list(prompt), None, list(prompt)
            for _ in range(max_tokens):
                o = model(encoder_outputs=(enc,), decoder_input_ids=torch.tensor([step]), past_key_values=past, use_cache=True)
                past, nxt = o.past_key_values, int(o.logits[0, -1].argmax())
                if nxt == eot:
                    break
                ids.append(nxt)
                step = [nxt]
        hf_ids = ids[len(prompt):]
        e = enc[0].numpy()
        n = max(1, min(1500, int(np.ceil(len(audio) / 16000 * 50))))  # frames of the clip itself
        cos = float((e[:n] * ct_enc[0, :n]).sum() / (np.linalg.norm(e[:n]) * np.linalg.norm(ct_enc[0, :n])))
        out.append({"encoder_max_abs_diff": float(np.abs(e - ct_enc[0]).max()), "encoder_max_abs": float(np.abs(ct_enc).max()),
                    "encoder_cosine": cos, "ct2_ids": [int(i) for i in ct_ids], "hf_ids": hf_ids,
                    "ct2_text": tok.decode(ct_ids, skip_special_tokens=True).strip(),
                    "hf_text": tok.decode(hf_ids, skip_special_tokens=True).strip()})
    return out
