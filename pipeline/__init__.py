"""speechinstruct: speech-instruction training data from raw speech and text corpora.

Stages live in this package (one job each, typed I/O); ``flows/`` only wires them with Prefect.
"""
from pathlib import Path

__version__ = "0.1.0"

#: Repository / install root: prompts/, schemas/ and config/ are resolved against it.
ROOT = Path(__file__).resolve().parent.parent
