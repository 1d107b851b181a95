"""GRASS variant: fine-tune a Whisper model's *decoder* (encoder frozen) to answer spoken instructions.

GRASS (Xia et al. 2023, arXiv 2309.02780) trains Whisper on instruction-speech pairs: the audio goes
through the (frozen) encoder, the task text is given to the decoder as prompt tokens, and the decoder
(all its parameters) learns to generate the answer. Here the examples, the split by speaker / source /
text id and the metric kinds are those of the DeSTA2 run (pipeline/train/: data.build_examples,
data.split_groups, ...); only the model differs. Decoder sequence of one example::

    <|startofprev|> {text prompt}  <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|> {response} <|endoftext|>
    `------------- prompt (Whisper's previous-text slot; the user message without <|AUDIO|>) --'  `-- loss here --'

- Model: transformers ``WhisperForConditionalGeneration`` + ``WhisperProcessor``, from a hub name
  (production: ``openai/whisper-small`` ... ``openai/whisper-large-v3`` on cuda) or a local directory.
  Weights are float32 (the trainable decoder keeps float32 master weights); ``train.dtype`` bfloat16 /
  float16 runs the forward passes under autocast and stores the frozen encoder in that dtype.
- The encoder is frozen, so its outputs (1500 frames: Whisper's decoder always attends to the padded
  30 s window) are computed once per clip and cached under ``grass/features/`` (float16);
  ``grass.cache_encoder: false`` computes them per batch instead (large corpora, large models).
- Training settings are the profile's ``train`` ones (steps, batch, schedule, checkpoints, seed, split)
  with GRASS-specific overrides in :class:`GrassConfig` (a decoder fine-tune wants a much lower lr than
  the DeSTA adapter). Checkpoints hold the decoder weights (safetensors) + optimizer/RNG state; a rerun
  resumes from the last one and continues exactly as an uninterrupted run.
- Evaluation on the test split (same examples as DeSTA): ``base`` (the Whisper model before decoder
  fine-tuning, same inputs), ``model``, ``model_silence`` (control: 1 s of silence in place of the
  audio) and ``model_shuffled_audio`` (control: another test clip). ROUGE-L F1 for generated answers,
  WER for ASR, accuracy for labels (closed questions: most likely choice; free answers: the class
  they name).

Everything lands in ``<output_dir>/<lang>/train/grass/`` (split.json, features/, checkpoints/,
train_log.jsonl, metrics.json, predictions.jsonl, report.md, loss.png, timings.json).

Modules: config (GrassConfig, systems), tokenizer (offline Whisper tokenizer), model (GrassModel), run
(GrassRun, prepare, compute_features), loop (fit), evaluate, report, entry (run_grass). They use only the
public functions of the DeSTA modules in pipeline/train/.
"""
