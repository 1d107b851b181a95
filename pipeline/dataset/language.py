"""What a dataset's language profile can and cannot do, for the dataset card and the manifest (issue 16).

Nothing here is guessed: the prompt files are looked up (``pipeline.core.prompts.localized``), the voices'
genders come from their names (espeak-ng ``+f``/``+m`` variants, Kokoro ``jf_``/``jm_``, the embedded Piper
voice is male), and the limitations are the ones the profile states (``limitations:``)."""
from __future__ import annotations

import re

from pipeline.core.config import Profile
from pipeline.core.prompts import fallbacks
from pipeline.core.text import error_metric, rate_units

#: the prompt files of the llm stage that have per-language variants (prompts/<lang>/...)
LLM_PROMPTS = ("desta_system.j2", "desta_user.j2", "description_questions.txt", "qa_system.j2", "qa_user.j2",
               "judge_system.j2", "judge_user.j2", "desta_seed.j2")


def voice_gender(backend: str, voice: str) -> str | None:
    """'female' / 'male' from a voice name, None when the name does not say."""
    v = voice.lower()
    if backend == "espeak-ng":
        m = re.search(r"\+([fm])\d", v)
        return {"f": "female", "m": "male"}[m.group(1)] if m else ("male" if "+" not in v else None)
    if backend == "kokoro":
        parts = [p.split("*")[0].strip() for p in v.split("+")]
        g = {p[1:2] for p in parts}
        return {"f": "female", "m": "male"}.get(g.pop()) if len(g) == 1 else None
    if backend == "piper" and "joe" in v:
        return "male"
    return None


def language_support(p: Profile) -> dict:
    lang = p.language
    tasks = [f"tasks/{t}.txt" for t in p.llm.label_tasks] + [f"tasks/{t}.answer.j2" for t in p.llm.label_tasks]
    genders = sorted({g for g in (voice_gender(p.tts.backend, v) for v in p.tts.voices) if g})
    return {
        "language": lang, "name": p.name,
        "asr_language": p.asr.language or f"detected, rows not in {lang} rejected (language_mismatch)",
        "error_metric": error_metric(lang),
        "speaking_rate_unit": rate_units("", lang)[1],
        "tts": {"backend": p.tts.backend, "voices": list(p.tts.voices), "genders": genders},
        "prompts_in_english": fallbacks(LLM_PROMPTS, lang) + fallbacks(tasks, lang),
        "limitations": list(p.limitations),
    }


def language_section(p: Profile) -> str:
    """Markdown for the dataset card: language, ASR check, metric, voices, English fallbacks, limitations."""
    s = language_support(p)
    lines = [f"## Language: {p.name} (`{p.language}`)", "",
             f"- ASR language: {s['asr_language']}; error metric: {s['error_metric'].upper()}; speaking rate in "
             f"{s['speaking_rate_unit']} per second (`speaking_rate_wps`, unit in `speaking_rate_source`).",
             f"- TTS: `{s['tts']['backend']}`, voices {', '.join(f'`{v}`' for v in s['tts']['voices'])} "
             f"(genders: {', '.join(s['tts']['genders']) or 'not known from the names'})."]
    if p.language.split("-")[0].lower() == "en":
        lines.append("- Prompts: the default (English) files.")
    elif s["prompts_in_english"]:
        lines.append(f"- Prompt files with no {p.name} variant (the English ones are used): "
                     + ", ".join(f"`{n}`" for n in s["prompts_in_english"]) + ".")
    else:
        lines.append(f"- Every LLM prompt and label-task template has a {p.name} variant.")
    if s["limitations"]:
        lines += ["", "What the embedded models cannot do for this language:", ""]
        lines += [f"- {x}" for x in s["limitations"]]
    return "\n".join(lines) + "\n"
