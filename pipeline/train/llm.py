"""The frozen LLM of the speech LM: an embedded GGUF dequantised once into transformers, or a hub/local model."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline.core.config import TrainConfig
from pipeline.core.model_cache import EMBEDDED_PREFIX, cache_dir, resolve


def hf_dir_for_gguf(ref: str) -> Path:
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
    """(model, tokenizer), frozen, on cfg.device in cfg.dtype."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(hf_dir_for_gguf(cfg.llm)) if cfg.llm.startswith(EMBEDDED_PREFIX) else cfg.llm
    tok = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=getattr(torch, cfg.dtype)).to(cfg.device)
    model.eval().requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tok
