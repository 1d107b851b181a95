"""What the description and QA tasks share: the chat request, the sampling record and the instruction row."""
from __future__ import annotations

import json

from pipeline.backends.llm.base import ChatRequest, LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.rows import messages


def chat_request(cfg: LLMConfig, system: str, user: str, seed: int, schema: dict | None = None,
                 max_tokens: int | None = None, temperature: float | None = None) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                       max_tokens=max_tokens or cfg.max_tokens,
                       temperature=cfg.temperature if temperature is None else temperature,
                       top_p=cfg.top_p, seed=seed, json_schema=schema)


def generate(engine: LLMEngine, requests: list[ChatRequest]) -> list[tuple[str, str | None]]:
    """(text, finish_reason) per request, in request order. The requests are sent sorted by their prompt
    text, so requests that share a prefix (system prompt, same utterance) are adjacent; the finish reason
    is the engine's (``complete``) where it has one, else None (truncation is then read from the text)."""
    order = sorted(range(len(requests)), key=lambda i: [m["content"] for m in requests[i].messages])
    batch = [requests[i] for i in order]
    if hasattr(engine, "complete"):
        outs = [(c.text, c.finish_reason) for c in engine.complete(batch)]
    else:
        outs = [(t, None) for t in engine.chat(batch)]
    res: list = [None] * len(requests)
    for i, o in zip(order, outs):
        res[i] = o
    return res


def subject(it: dict, task: str, rid: str, prompt: str, response: str, finish_reason: str | None):
    """What the quality checks (pipeline.stages.llm.filter) see of one generated item."""
    from pipeline.quality.checks import Subject

    row = it["row"]
    return Subject(rid, task, it["transcript"], it["seed_description"], prompt, response, finish_reason,
                   it.get("source"), row.get("asr_avg_logprob"), it.get("language"))


def sampling_json(cfg: LLMConfig, **extra) -> str:
    return json.dumps({"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, **extra})


def generated_row(engine: LLMEngine, dataset: str, rid: str, row: dict, task: str, prompt: str, response: str,
                  seed_desc: str, source: str, tmpl: str, h: str, sampling: str, seed: int) -> dict:
    """The instructions row of one generated item (before the judge adds its columns)."""
    return {
        "id": rid, "utterance_id": row["id"], "task": task, "dataset": dataset, "audio": row["audio"],
        "seed_description": seed_desc, "prompt": prompt, "response": response,
        "messages": messages(prompt, response), "text_source": source, "engine": engine.name,
        "model_id": engine.model_id, "prompt_template": tmpl, "prompt_hash": h,
        "sampling_json": sampling, "seed": seed, "model_json": model_provenance(engine),
    }


_PROVENANCE: dict[tuple, str] = {}


def _sha256(path: str, st) -> str:
    """The file's sha256: from the ``<file>.sha256`` stamp the model cache writes after checking an embedded
    model (when it is newer than the file), else computed (once per process: model_provenance caches it)."""
    import hashlib
    import os
    from pathlib import Path

    from pipeline.core.model_cache import sha256_stamp

    stamp = sha256_stamp(Path(path))
    try:
        if os.stat(stamp).st_mtime >= st.st_mtime:
            digest = stamp.read_text().split()[0]
            if len(digest) == 64:
                return digest
    except (OSError, IndexError):
        pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def model_provenance(engine: LLMEngine) -> str:
    """JSON naming the model behind ``engine.model_id`` as the weights say: the file, its GGUF metadata
    (``general.name``, ``general.basename``, ``general.size_label``, read from the header by
    ``pipeline.core.gguf_meta``) and its sha256. A hub name (no local file) is recorded as it is. Cached per file
    (path, size, mtime)."""
    import os

    ref = getattr(engine, "model_id", None) or ""
    try:
        from pipeline.core.model_cache import resolve

        path = resolve(ref) if ref else ""
    except Exception:  # noqa: BLE001 - an unknown embedded name: record the reference only
        path = ""
    if not path or not os.path.isfile(path):
        return json.dumps({"ref": ref, "file": None, "general_name": None, "sha256": None})
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime)
    if key not in _PROVENANCE:
        info = {"ref": ref, "file": os.path.basename(path), "bytes": st.st_size}
        if path.endswith(".gguf"):
            try:
                from pipeline.core.gguf_meta import gguf_strings

                fields = gguf_strings(path, {f"general.{k}" for k in ("name", "basename", "size_label", "finetune")})
                for k in ("name", "basename", "size_label", "finetune"):
                    info[f"general_{k}"] = fields.get(f"general.{k}")
            except Exception as e:  # noqa: BLE001 - unreadable metadata is recorded, not fatal
                info["general_name"], info["metadata_error"] = None, f"{type(e).__name__}: {e}"
        info["sha256"] = _sha256(path, st)
        _PROVENANCE[key] = json.dumps(info, ensure_ascii=False)
    return _PROVENANCE[key]
