"""The metadata estimator protocol, the per-clip estimator base class and small shared helpers.

Every estimator backend (one file each in this folder) fills one group of ``utterances`` columns and has
ONE batch method: ``predict_batch(audios, sample_rate) -> list[dict | Exception]``, one entry per clip
(an Exception for a clip it could not measure; it raises only when the whole call fails). Model-backed
estimators take the whole batch at once; the cheap numpy ones (loudness, WADA SNR, pitch, speech span)
subclass :class:`ClipEstimator` and measure clip by clip. ``columns`` maps each output column to the key
of ``predict_batch``'s dicts that holds it (``None``: the dicts use the column names).
"""
from __future__ import annotations

import importlib.metadata as _md
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Estimator(Protocol):
    name: str  # the estimator's name in metadata_errors ("snr", "gender", ...)
    keys: tuple[str, ...]  # the columns it fills, all set or all None
    columns: dict[str, str] | None  # column -> key in predict_batch's dicts (None: the same names)
    uses_torch: bool  # runs torch models (the stage then sets torch's intra-op threads around it)

    @classmethod
    def from_config(cls, cfg: Any, **context: Any) -> "Estimator": ...

    def predict_batch(self, audios: list[np.ndarray], sample_rate: int) -> list[dict | Exception]: ...


class ClipEstimator:
    """An estimator measured clip by clip: subclasses define ``estimate(x, sr) -> dict`` (raising for a
    clip it cannot measure)."""

    name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()
    columns: ClassVar[dict[str, str] | None] = None
    uses_torch: ClassVar[bool] = False

    @classmethod
    def from_config(cls, cfg: Any, **context: Any) -> "ClipEstimator":
        return cls()

    def estimate(self, x: np.ndarray, sr: int) -> dict:
        raise NotImplementedError

    def predict_batch(self, audios: list[np.ndarray], sample_rate: int) -> list[dict | Exception]:
        out: list[dict | Exception] = []
        for x in audios:
            try:
                out.append(self.estimate(x, sample_rate))
            except Exception as e:  # noqa: BLE001 - per clip
                out.append(e)
        return out


def dist_version(dist: str) -> str:
    """Installed version of a distribution, "unknown" when it is not installed."""
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "unknown"


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[k: k + batch_size] for k in range(0, len(order), batch_size)]


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)
