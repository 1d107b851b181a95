"""Speech-LM training on the produced shards: a DeSTA2-style adapter model and the GRASS variant.

Architecture (DeSTA2): a frozen Whisper encoder -> a trainable modality adapter (frame-stacking MLP
projector, or a small Q-Former) -> a frozen LLM (LoRA optional). Audio embeddings replace the
``<|AUDIO|>`` placeholder of the chat messages; the loss is on the response tokens only.

- Embedded default (2 CPU cores, minutes): Whisper base encoder in CTranslate2 (the ASR stage's
  weights; frozen, so its outputs are computed once per audio clip and cached) and SmolLM2-135M
  dequantised from its GGUF into PyTorch by transformers.
- Production (same code, GPU): a hub Whisper (``openai/whisper-large-v3``) through transformers'
  ``WhisperModel`` encoder and a 7-8B instruct LLM (``TrainConfig.llm``), ``device: cuda``,
  ``dtype: bfloat16``, optionally LoRA and gradient checkpointing.

Steps (each is a task of the Prefect flow ``train`` in flows/train.py; ``entry.run_all`` runs them in-process):

    prepare    run.prepare: read the Parquet shards (datasets.load_dataset), build examples (data.py), split
               by speaker / source file (TTS rows by text id) -> split.json
    features   run.compute_features: frozen encoder outputs per audio clip (encoders.py) -> features/
    fit        loop.fit: train the adapter (model.py, llm.py); checkpoints (checkpoint.py) every N steps; resumable
    evaluate   evaluate.evaluate: held-out test split, model vs "no audio" and "ASR transcript as text" baselines
    report     report.write_report: metrics.json, predictions.jsonl, report.md, loss.png

Everything lands in ``<output_dir>/<lang>/train/``. The GRASS variant (fine-tune a Whisper decoder on the
same examples and split; ``--variant grass``) is the package pipeline/train/grass/ and writes ``train/grass/``.
"""
import os

# Idle OpenMP threads sleep instead of spinning: on a shared CPU box, spinning threads of a 2-thread
# torch burn 5x the CPU time of the real work (measured here). Effective only before torch is imported,
# so it is set when any module of this package is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
