"""SpeechVerse / GRASS-style multi-task instructions made from utterance labels, without an LLM.

Each task has a phrasing pool ``prompts/tasks/<task>.txt`` (one instruction per line) and an
answer template ``prompts/tasks/<task>.answer.j2``. For every utterance and task, a phrasing and
an answer form are drawn with a seed that depends only on the profile seed, the utterance id and
the task, so a rerun gives the same rows.

A task applies to an utterance only when its label is there (a transcript for ``asr``, a gender
for ``gender``, ...); emotion and accent exist only where a column or a manifest label gives them
(nothing here estimates them). A label that is there but not trusted (gender or language
probability under the profile threshold) gives a reject ``<task>_low_confidence``.
"""
from __future__ import annotations

import json
import random

from pipeline.core.config import LLMConfig
from pipeline.core.prompts import lines, localized, render, template_hash
from pipeline.core.rows import gender_of, manifest_labels, messages, reject, stable_seed
from pipeline.stages.llm.seed import pitch_label, snr_label, speed_label_for

LANGUAGES = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "no": "Norwegian", "fi": "Finnish", "pl": "Polish",
    "cs": "Czech", "ru": "Russian", "uk": "Ukrainian", "tr": "Turkish", "el": "Greek", "ar": "Arabic",
    "he": "Hebrew", "fa": "Persian", "hi": "Hindi", "bn": "Bengali", "ur": "Urdu", "ta": "Tamil",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian",
    "ms": "Malay", "sw": "Swahili", "hu": "Hungarian", "ro": "Romanian", "ca": "Catalan", "cy": "Welsh",
}


def _label(row: dict, name: str) -> tuple[str | None, str | None]:
    """A categorical label from the manifest labels (given by a person), else from an utterance
    column (value, source)."""
    v = manifest_labels(row).get(name)
    if isinstance(v, (str, int, float)) and str(v).strip():
        return str(v).strip(), f"labels_json.{name}"
    v = row.get(name)
    if v not in (None, ""):
        return str(v).strip(), name
    return None, None


class LabelTasks:
    """Template instructions for one shard of utterance rows -> (instruction rows, rejects)."""

    engine = "template"

    def __init__(self, cfg: LLMConfig, dataset: str, language: str | None = None):
        self.cfg, self.dataset, self.language = cfg, dataset, language
        self.tasks = list(dict.fromkeys(cfg.label_tasks))
        # phrasings and answers in the profile language (prompts/tasks/<lang>/...) where they exist
        self.files = {t: (localized(f"tasks/{t}.txt", language), localized(f"tasks/{t}.answer.j2", language))
                      for t in self.tasks}
        self.phrasings = {t: lines(self.files[t][0]) for t in self.tasks}
        self.hashes = {t: template_hash(*self.files[t]) for t in self.tasks}

    # ---- labels: each returns (answer template variables, label_source) or None (task does not apply),
    # or raises LowConfidence
    def labels(self, task: str, row: dict, transcript: str, source: str):
        if task == "asr":
            return ({"transcript": transcript}, f"{source}_text") if transcript.strip() else None
        if task == "gender":
            v, src = _label(row, "gender")
            if v is None or v.lower() not in ("male", "female"):
                return None
            if src == "gender":
                score = row.get("gender_score")
                if score is not None and score < self.cfg.label_min_gender_score:
                    raise LowConfidence(f"gender {v} with probability {score:.2f} < {self.cfg.label_min_gender_score}")
                src = f"gender:{row.get('gender_source') or 'estimate'}"
            return {"gender": v.lower()}, src
        if task == "speaking_rate":
            dur = float(row.get("duration_s") or 0)
            if not transcript.split() or dur <= 0:
                return None
            # words; morae (ja) or characters (zh, ...) per the language's convention (pipeline.core.text.rate_units)
            rate, per_min, unit = speed_label_for(transcript, dur, self.language)
            return ({"rate": rate, "wpm": per_min, "unit": unit}, f"{source}_text {unit} / duration_s")
        if task == "pitch":
            hz = row.get("pitch_mean_hz")
            if hz is None:
                return None
            return ({"pitch": pitch_label(hz, gender_of(row)), "hz": int(round(hz))},
                    f"pitch_mean_hz:{row.get('pitch_source') or 'estimate'}")
        if task == "noise_level":
            snr = row.get("snr_db")
            if snr is None:
                return None
            capped = bool(row.get("snr_capped"))  # at the estimator's cap: "clean", no number (snr None)
            return ({"noise": snr_label(snr, capped).split(" (")[0], "snr": None if capped else int(round(snr))},
                    f"snr_db:{row.get('snr_source') or 'estimate'}" + (":capped" if capped else ""))
        if task == "language":
            code = row.get("asr_language")
            if not code:
                return None
            p = row.get("asr_language_prob")
            if p is not None and p < self.cfg.label_min_language_prob:
                raise LowConfidence(f"language {code} with probability {p:.2f} < {self.cfg.label_min_language_prob}")
            return {"language": LANGUAGES.get(code, code), "code": code}, f"asr_language:{row.get('asr_model') or 'asr'}"
        if task in ("emotion", "accent"):
            v, src = _label(row, task)
            if v and src == task:
                model = row.get(f"{task}_source") or ""
                if model.startswith("text-"):
                    # a label read from the transcript's words says nothing about how the voice sounds: it feeds
                    # the seed description (marked text-based) but is no target for a question about the audio
                    return None
                src = f"{task}:{model}" if model else task
            return ({task: v}, src) if v else None
        raise ValueError(f"unknown label task {task!r}")

    def process(self, rows: list[dict], transcripts: dict[str, tuple[str, str]], seed_descriptions: dict[str, str]):
        out, rejects = [], []
        for row in rows:
            transcript, source = transcripts[row["id"]]
            for task in self.tasks:
                rid = f"{row['id']}-{task}-0"
                try:
                    lab = self.labels(task, row, transcript, source)
                except LowConfidence as e:
                    rejects.append(reject(rid, row, "llm", f"{task}_low_confidence", f"{task}: {e}", None))
                    continue
                if lab is None:
                    continue
                values, label_source = lab
                seed = stable_seed(self.cfg.seed, row["id"], task)
                rng = random.Random(seed)
                pool = self.phrasings[task]
                k = rng.randrange(len(pool))
                variant = rng.randrange(1 << 16)
                prompt = pool[k]
                response = render(self.files[task][1], variant=variant, **values)
                if None in values.values():  # e.g. snr None (capped): a template without a form for it says "None"
                    for v2 in range(variant + 1, variant + 8):
                        if "None" not in response:
                            break
                        variant, response = v2, render(self.files[task][1], variant=v2, **values)
                    if "None" in response:  # every item asked for is a row or a reject: say why there is none
                        rejects.append(reject(rid, row, "llm", f"{task}_no_answer_form",
                                              f"{task}: no answer form of {self.files[task][1]} without the missing "
                                              f"value(s) {sorted(k for k, v in values.items() if v is None)}", None))
                        continue
                out.append({
                    "id": rid, "utterance_id": row["id"], "task": task, "dataset": self.dataset, "audio": row["audio"],
                    "seed_description": seed_descriptions.get(row["id"]), "prompt": prompt, "response": response,
                    "messages": messages(prompt, response),
                    "text_source": source if task in ("asr", "speaking_rate") else None,
                    "label_source": label_source, "engine": self.engine, "model_id": None,
                    "prompt_template": self.files[task][0], "prompt_hash": self.hashes[task],
                    "sampling_json": json.dumps({"phrasing": k, "n_phrasings": len(pool), "answer_variant": variant}),
                    "seed": seed, "judge_groundedness": None, "judge_usefulness": None, "judge_json": None,
                })
        return out, rejects


class LowConfidence(Exception):
    pass
