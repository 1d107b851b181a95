"""Small pieces every training module shares: TrainError, the split names, seeding, atomic JSON, counting."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np

MAX_TARGET_TOKENS = 160  # training targets are cut here (bounds step time on CPU)
SPLITS = ("train", "val", "test")


class TrainError(RuntimeError):
    pass


def torch_module():
    """torch, imported on first use (the package is imported for its light parts too)."""
    import torch

    return torch


def seed_everything(seed: int) -> None:
    torch = torch_module()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def write_json(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False))
    tmp.replace(path)


def count(items) -> dict:
    """{item: occurrences}, sorted by item."""
    d: dict[str, int] = {}
    for x in items:
        d[x] = d.get(x, 0) + 1
    return dict(sorted(d.items()))
