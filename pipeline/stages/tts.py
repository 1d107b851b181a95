"""TTS stage: speak a text instruction corpus with sampled voices -> instruction rows with audio."""
from __future__ import annotations

import json
import random

from pipeline.core.audio import SAMPLE_RATE, encode_flac, resample
from pipeline.core.config import TTSConfig
from pipeline.core.rows import messages, stable_seed

DEFAULT_PROMPT = "Respond to the spoken instruction."


class TtsStage:
    name = "tts"
    reads = "texts"
    writes = "instructions"

    @classmethod
    def from_profile(cls, profile) -> "TtsStage":
        from pipeline.stages.asr import shared_asr

        return cls(profile.tts, profile.dataset, profile.seed, profile.language,
                   asr=shared_asr(profile.asr) if profile.tts.gate_max_wer is not None else None)

    def __init__(self, cfg: TTSConfig, dataset: str, seed: int, language: str = "en", asr=None):
        """``asr``: an ASR backend for the intelligibility gate (required when cfg.gate_max_wer is set)."""
        from pipeline.backends.tts import load_tts

        self.cfg, self.dataset, self.seed, self.language, self.asr = cfg, dataset, seed, language, asr
        self.backend = load_tts(cfg, language)
        self.voices = self.backend.voices()

    def process(self, texts: list[dict]) -> tuple[list[dict], list[dict]]:
        from pipeline.recipes.speakable import Unspeakable, normalize_for_speech, speech_text
        from pipeline.recipes.text import TextInstruction
        from pipeline.backends.tts.base import TTSError
        from pipeline.backends.tts.dsp import loudness_normalize, pitch_shift

        candidates, rejects = [], []
        for rec in texts:
            r = TextInstruction(**rec)
            rid = f"{r.id}-tts_instruction-0"
            base = {"id": rid, "stage": "tts", "source_path": r.source}
            try:
                text = normalize_for_speech(speech_text(r, self.cfg.speak), self.language, self.cfg.max_chars)
            except Unspeakable as e:
                rejects.append({**base, "reason": f"unspeakable_{e.reason}", "detail": str(e), "raw": speech_text(r, self.cfg.speak)})
                continue
            if not r.output.strip():
                rejects.append({**base, "reason": "no_response", "detail": "record has no output to use as the response", "raw": text})
                continue
            rng = random.Random(stable_seed(self.seed, r.id))
            voice = rng.choice(self.voices)
            length_scale = rng.choice(self.cfg.length_scales)
            semitones = rng.choice(self.cfg.pitch_shifts)
            try:
                audio, sr = self.backend.synthesize(text, voice, length_scale)
                audio = resample(audio, sr, SAMPLE_RATE)
                if semitones:
                    audio = pitch_shift(audio, SAMPLE_RATE, semitones)
                audio = loudness_normalize(audio, SAMPLE_RATE, self.cfg.target_lufs)
            except TTSError as e:
                rejects.append({**base, "reason": "tts_failed", "detail": str(e), "raw": text})
                continue
            prompt = r.input.strip() if self.cfg.speak == "instruction" and r.input.strip() else DEFAULT_PROMPT
            candidates.append((audio, text, {
                "id": rid, "utterance_id": None, "task": "tts_instruction", "dataset": f"{self.dataset}/{r.source}",
                "audio": {"bytes": encode_flac(audio, SAMPLE_RATE), "path": f"{rid}.flac"},
                "seed_description": None, "prompt": prompt, "response": r.output.strip(),
                "messages": messages(prompt, r.output.strip()), "text_source": "corpus",
                "engine": self.backend.name, "model_id": voice, "voice": voice,
                "tts_settings_json": json.dumps({"length_scale": length_scale, "pitch_shift_semitones": semitones,
                                                "target_lufs": self.cfg.target_lufs, "spoken_text": text, "speak": self.cfg.speak,
                                                # backend-specific voice settings (e.g. Kokoro style blend and speed)
                                                **(self.backend.voice_settings(voice) if hasattr(self.backend, "voice_settings") else {})}),
                "seed": stable_seed(self.seed, r.id),
            }))
        return self.gate(candidates, rejects)

    def gate(self, candidates: list[tuple], rejects: list[dict]) -> tuple[list[dict], list[dict]]:
        """Transcribe every clip with the ASR stage; reject those whose WER vs the spoken text is too high."""
        if self.cfg.gate_max_wer is None or not candidates:
            return [row for _, _, row in candidates], rejects
        from pipeline.recipes.speakable import Unspeakable, normalize_for_speech
        from pipeline.core.text import error_metric, error_rate

        hyps = self.asr.transcribe_batch([a for a, _, _ in candidates], SAMPLE_RATE, self.language)
        rows = []
        for (audio, text, row), hyp in zip(candidates, hyps):
            try:
                heard = normalize_for_speech(hyp.text, self.language, 10_000)
            except Unspeakable:
                heard = hyp.text
            w = error_rate(text, heard, self.language)  # CER for ja, zh, ... (gate_metric), WER otherwise
            settings = json.loads(row["tts_settings_json"])
            row["tts_settings_json"] = json.dumps({**settings, "gate_asr_text": hyp.text, "gate_wer": w,
                                                   "gate_metric": error_metric(self.language)}, ensure_ascii=False)
            if w is None or w > self.cfg.gate_max_wer:
                rejects.append({"id": row["id"], "stage": "tts", "reason": "gate_wer", "source_path": row["dataset"],
                                "raw": hyp.text, "detail": f"round-trip {error_metric(self.language).upper()} {w} > {self.cfg.gate_max_wer} "
                                f"(voice {row['voice']}, spoke {text!r})"})
            else:
                rows.append(row)
        return rows, rejects
