"""What the description and QA tasks share: the chat request, the sampling record and the instruction row."""
from __future__ import annotations

import json

from pipeline.backends.llm.base import ChatRequest, LLMEngine
from pipeline.core.config import LLMConfig
from pipeline.core.rows import messages


def chat_request(cfg: LLMConfig, system: str, user: str, seed: int, schema: dict | None = None,
                 max_tokens: int | None = None) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                       max_tokens=max_tokens or cfg.max_tokens, temperature=cfg.temperature,
                       top_p=cfg.top_p, seed=seed, json_schema=schema)


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
        "sampling_json": sampling, "seed": seed,
    }
