"""Kokoro backend: Kokoro-82M (int8 ONNX, embedded ``kokoro-82m-int8``) through onnxruntime, with espeak-ng IPA
mapped to Kokoro's phonemes (``espeak_to_kokoro``); five voice styles (Japanese speakers, used for English) and
weighted blends of them."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from pipeline.backends.tts.base import (TTSError, check_audio, check_length_scale, check_text, configured_voices,
                                        reject_embedded)
from pipeline.core.config import TTSConfig
from pipeline.core.model_cache import REGISTRY, resolve

KOKORO_EMBEDDED = REGISTRY["kokoro-82m-int8"]

KOKORO_SAMPLE_RATE = 24000
KOKORO_MAX_TOKENS = 510  # the model's context is 512 positions, two of them the boundary pads

# espeak-ng IPA (--tie=^) -> Kokoro/misaki phoneme symbols. Ordered: longer sequences before their parts.
_ESPEAK_TO_KOKORO_EN = (
    ("ʔˌn\u0329", "tᵊn"), ("ʔn\u0329", "tᵊn"), ("ʔn", "tᵊn"),
    ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^ʒ", "ʤ"), ("e^ɪ", "A"), ("t^ʃ", "ʧ"), ("ɔ^ɪ", "Y"), ("ə^l", "ᵊl"),
    ("ʲo", "jo"), ("ʲə", "jə"), ("ʲ", ""), ("ɚ", "əɹ"), ("r", "ɹ"), ("x", "k"), ("ç", "k"), ("ɐ", "ə"), ("ɬ", "l"),
    ("ʔ", "t"), ("\u0303", ""),
)
_ESPEAK_TO_KOKORO_US = (("o^ʊ", "O"), ("e", "A"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))
_ESPEAK_TO_KOKORO_GB = (("ə^ʊ", "Q"), ("e^ə", "ɛː"), ("e", "A"), ("iə", "ɪə"))
_ESPEAK_TO_KOKORO_OTHER = (
    ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^z", "ʣ"), ("d^ʒ", "ʤ"), ("e^ɪ", "A"), ("o^ʊ", "O"), ("ə^ʊ", "Q"), ("s^s", "S"),
    ("t^s", "ʦ"), ("t^ʃ", "ʧ"), ("ɔ^ɪ", "Y"), ("-", ""),
)
#: clause punctuation kept between phonemised clauses (Kokoro's vocabulary has it; it shapes pauses and intonation)
_CLAUSE_SPLIT = re.compile(r"([.,;:!?…—]+)(?=\s|$)")


def espeak_to_kokoro(ipa: str, voice: str = "en-us") -> str:
    """espeak-ng ``--ipa --tie=^`` output -> Kokoro's phoneme symbols (misaki's conventions: ``A`` = eɪ, ``I`` = aɪ,
    ``O`` = oʊ, ``W`` = aʊ, ``Y`` = ɔɪ, ``ʤ``/``ʧ``, ``ᵊ`` for syllabic consonants; American English drops length)."""
    v = voice.lower()
    ps = " ".join(ipa.split())
    if v.startswith("en"):
        british = not v.startswith("en-us") and v not in ("en", "en-029")
        for old, new in _ESPEAK_TO_KOKORO_EN + (_ESPEAK_TO_KOKORO_GB if british else _ESPEAK_TO_KOKORO_US):
            ps = ps.replace(old, new)
        ps = re.sub("(\\S)\u0329", "ᵊ\\1", ps).replace("\u0329", "")
        ps = ps.replace("o", "ɔ")  # espeak-ng < 1.52 writes a bare o for the thought vowel
        ps = ps.replace("ɹɹ", "ɹ")  # ɚ + linking r ("summarize" sˈʌmɚɹaɪz) would say the r twice
    else:
        for old, new in _ESPEAK_TO_KOKORO_OTHER:
            ps = ps.replace(old, new)
    return ps.replace("^", "")


def _kokoro_voice_spec(spec: str, known) -> dict[str, float]:
    """``jf_alpha`` or a blend ``jf_alpha*0.6+jm_kumo*0.4`` (weights default to 1, normalised to sum 1)."""
    mix: dict[str, float] = {}
    for part in spec.split("+"):
        name, star, w = part.strip().partition("*")
        name = name.strip()
        try:
            weight = float(w) if star else 1.0
        except ValueError:
            raise TTSError(f"kokoro: bad weight {w!r} in voice {spec!r} (expected e.g. 'jf_alpha*0.6+jm_kumo*0.4')") from None
        if name not in known:
            raise TTSError(f"kokoro: unknown voice {name!r} in {spec!r}; available: {', '.join(known)}")
        if not (np.isfinite(weight) and weight > 0):
            raise TTSError(f"kokoro: voice weight must be > 0 in {spec!r}")
        mix[name] = mix.get(name, 0.0) + weight
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items()}


class KokoroBackend:
    """Kokoro-82M (StyleTTS2-style, 24 kHz) through onnxruntime; text -> phonemes with espeak-ng (``--ipa``) mapped to
    Kokoro's symbols, so any language espeak-ng speaks can be fed (tested: English, ``en-us``).

    ``model``: a directory with ``model.onnx`` (or one ``*.onnx``), a voices file (``voices.npz`` or kokoro-onnx's
    ``voices-v1.0.bin``; an npz of ``(510, 1, 256)`` style arrays) and ``vocab.json`` (or a ``config.json`` with a
    ``vocab``). The embedded default (``embedded:kokoro-82m-int8``) has five Japanese voice styles (jf_* female,
    jm_kumo male); they speak English phonemes with a light accent. Voices are style names or blends
    (``jf_alpha*0.6+jm_kumo*0.4``); ``speed`` is the base speed, divided by ``length_scale`` per call.
    """

    name = "kokoro"

    def __init__(self, model: str = "embedded:kokoro-82m-int8", voices: list[str] | None = None,
                 phonemizer_voice: str = "en-us", speed: float = 1.0, threads: int = 2, use_cuda: bool = False,
                 espeak_binary: str = "espeak-ng", timeout_s: float = 60.0):
        import onnxruntime as ort

        self.espeak = shutil.which(espeak_binary)
        if self.espeak is None:
            raise TTSError(f"kokoro: espeak-ng ({espeak_binary!r}) is needed for phonemes (apt-get install espeak-ng)")
        self.phonemizer_voice, self.timeout_s = phonemizer_voice, timeout_s
        probe = subprocess.run([self.espeak, "-q", "--ipa", "-v", phonemizer_voice, "a"], capture_output=True,
                               text=True, timeout=30)
        if probe.returncode != 0 or not probe.stdout.strip():
            raise TTSError(f"kokoro: espeak-ng has no voice {phonemizer_voice!r} ({probe.stderr.strip()})")
        if not (np.isfinite(speed) and 0.5 <= speed <= 2.0):
            raise TTSError(f"kokoro: speed {speed} outside [0.5, 2]")
        self.speed = float(speed)
        self.model_ref = model
        root = Path(resolve(model))
        onnx_path, voices_path, vocab_path = self._files(root)
        try:
            vocab_doc = json.loads(vocab_path.read_text(encoding="utf-8"))
            self.vocab: dict[str, int] = {k: int(v) for k, v in vocab_doc["vocab"].items()}
            with np.load(voices_path) as z:
                self.styles = {k: np.asarray(z[k], dtype=np.float32).reshape(-1, 256) for k in z.files}
        except Exception as e:
            raise TTSError(f"kokoro: cannot read vocabulary {vocab_path} / voices {voices_path}: {e}") from e
        if not self.styles:
            raise TTSError(f"kokoro: no voices in {voices_path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        except Exception as e:
            raise TTSError(f"kokoro: cannot load {onnx_path}: {e}") from e
        names = {i.name for i in self.session.get_inputs()}
        if not {"tokens", "style", "speed"} <= names:
            raise TTSError(f"kokoro: {onnx_path} is not a Kokoro ONNX export (inputs {sorted(names)})")
        self._voices = list(dict.fromkeys(voices or sorted(self.styles)))
        self._mix = {v: _kokoro_voice_spec(v, list(self.styles)) for v in self._voices}

    @classmethod
    def from_config(cls, cfg: TTSConfig, language: str | None = None) -> "KokoroBackend":
        """``tts.voices`` are style names or blends (the default list: every style); the espeak-ng phonemizer voice is
        ``tts.kokoro_phonemizer``, else ``en-us`` for the profile language ``en`` and the language itself otherwise."""
        voices = configured_voices(cfg)  # the default list names Piper voices
        reject_embedded(voices, "kokoro: tts.voices must be Kokoro voice styles or blends (jf_alpha, "
                                "jf_alpha*0.6+jm_kumo*0.4, ...)")
        lang = (language or "en").lower()
        phonemizer = cfg.kokoro_phonemizer or ("en-us" if lang == "en" else lang)
        return cls(cfg.kokoro_model, voices, phonemizer_voice=phonemizer, speed=cfg.kokoro_speed,
                   threads=cfg.kokoro_threads, use_cuda=cfg.device.startswith("cuda"))

    @staticmethod
    def _files(root: Path) -> tuple[Path, Path, Path]:
        if not root.exists():
            raise TTSError(f"kokoro: model {root} does not exist")
        d = root if root.is_dir() else root.parent
        if root.is_file():
            onnx = root
        else:
            cands = [d / "model.onnx"] if (d / "model.onnx").is_file() else sorted(d.glob("*.onnx"))
            if len(cands) != 1:
                raise TTSError(f"kokoro: expected one .onnx model in {d}, found {[c.name for c in cands]}")
            onnx = cands[0]
        voices = next((p for p in [d / "voices.npz", *sorted(d.glob("voices*.npz")), *sorted(d.glob("voices*.bin"))]
                       if p.is_file()), None)
        vocab = next((p for p in (d / "vocab.json", d / "config.json") if p.is_file()), None)
        if voices is None or vocab is None:
            raise TTSError(f"kokoro: {d} needs a voices file (voices.npz / voices-v1.0.bin) and vocab.json next to {onnx.name}")
        return onnx, voices, vocab

    def voices(self) -> list[str]:
        return list(self._voices)

    def sample_rate(self, voice: str | None = None) -> int:
        return KOKORO_SAMPLE_RATE

    def gender(self, voice: str) -> str | None:
        """Kokoro voice names start with language + gender (``jf_`` Japanese female, ``am_`` American male); a blend
        takes the gender holding more than half of its weight."""
        mix = self._mix.get(voice) or _kokoro_voice_spec(voice, list(self.styles))
        f = sum(w for k, w in mix.items() if k[1:2] == "f")
        m = sum(w for k, w in mix.items() if k[1:2] == "m")
        return "female" if f > 0.5 else "male" if m > 0.5 else None

    def voice_settings(self, voice: str) -> dict:
        """What a row should record about the voice besides its name: the style mix, base speed and phonemizer."""
        mix = self._mix.get(voice) or _kokoro_voice_spec(voice, list(self.styles))
        return {"kokoro_style_mix": {k: round(w, 4) for k, w in mix.items()}, "kokoro_speed": self.speed,
                "phonemizer": f"espeak-ng:{self.phonemizer_voice}"}

    # -- text -> phonemes

    def _espeak_lines(self, lines: list[str]) -> list[str]:
        try:
            proc = subprocess.run([self.espeak, "-q", "--ipa", "--tie=^", "-v", self.phonemizer_voice],
                                  input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=self.timeout_s)
        except subprocess.TimeoutExpired as e:
            raise TTSError(f"kokoro: espeak-ng timed out after {self.timeout_s} s") from e
        if proc.returncode != 0:
            raise TTSError(f"kokoro: espeak-ng -v {self.phonemizer_voice} exit {proc.returncode}: {proc.stderr.strip()}")
        return [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]

    def phonemize(self, text: str) -> str:
        """Text -> Kokoro phoneme string; clause punctuation (, . ; : ! ?) is kept between the phonemised clauses."""
        if self.phonemizer_voice.lower().startswith("ja"):  # espeak-ng's ja voice reads kana only: kanji -> hiragana
            from pipeline.core.text import reading

            text = reading(text, "ja")
        pieces = _CLAUSE_SPLIT.split(text)
        clauses = [(pieces[i].strip(), pieces[i + 1] if i + 1 < len(pieces) else "") for i in range(0, len(pieces), 2)]
        spoken = [c for c, _ in clauses if any(ch.isalnum() for ch in c)]
        ipa = self._espeak_lines(spoken) if spoken else []
        if len(ipa) != len(spoken):  # espeak-ng split a clause further (quotes, brackets ...): one call per clause
            ipa = [" ".join(self._espeak_lines([c])) for c in spoken]
        it = iter(ipa)
        out: list[str] = []
        for words, punct in clauses:
            ps = espeak_to_kokoro(next(it), self.phonemizer_voice) if any(ch.isalnum() for ch in words) else ""
            p = next((ch for ch in punct if ch in self.vocab), "")
            if ps or p:
                out.append(ps + p)
        return " ".join(out).strip()

    def _tokens(self, phonemes: str) -> list[list[int]]:
        """Token id chunks of at most KOKORO_MAX_TOKENS, cut after sentence or clause punctuation, else at spaces."""
        ids = [self.vocab[c] for c in phonemes if c in self.vocab]
        chunks, start = [], 0
        stops = {self.vocab.get(c) for c in ".!?"} - {None}
        commas = {self.vocab.get(c) for c in ",;:—…"} - {None}
        space = self.vocab.get(" ")
        while len(ids) - start > KOKORO_MAX_TOKENS:
            window = ids[start:start + KOKORO_MAX_TOKENS]
            cut = next((k + 1 for group in (stops, commas, {space}) for k in range(len(window) - 1, 0, -1)
                        if window[k] in group), len(window))
            chunks.append(ids[start:start + cut])
            start += cut
        chunks.append(ids[start:])
        return [c for c in chunks if any(t != space for t in c)]

    # -- synthesis

    def style(self, voice: str, n_tokens: int) -> np.ndarray:
        mix = self._mix.get(voice) or _kokoro_voice_spec(voice, list(self.styles))
        ref = sum(w * self.styles[k][min(max(n_tokens - 1, 0), self.styles[k].shape[0] - 1)] for k, w in mix.items())
        return np.asarray(ref, dtype=np.float32).reshape(1, 256)

    def synthesize(self, text: str, voice: str | None = None, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        t = check_text(text, self.name)
        ls = check_length_scale(length_scale, self.name)
        v = voice or self._voices[0]
        if v not in self._voices:
            raise TTSError(f"kokoro: unknown voice {v!r}; available: {', '.join(self._voices)}")
        speed = self.speed / ls
        if not 0.5 <= speed <= 2.0:
            raise TTSError(f"kokoro: speed {speed:.2f} (base {self.speed} / length_scale {ls}) outside [0.5, 2]")
        phonemes = self.phonemize(t)
        chunks = self._tokens(phonemes)
        if not chunks:
            raise TTSError(f"kokoro: no phonemes for {t[:60]!r} (espeak-ng voice {self.phonemizer_voice})")
        parts = []
        try:
            for ids in chunks:
                out = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                                              "style": self.style(v, len(ids)),
                                              "speed": np.array([speed], dtype=np.float32)})[0]
                parts.append(np.asarray(out, dtype=np.float32).reshape(-1))
        except Exception as e:
            raise TTSError(f"kokoro: synthesis failed for {t[:60]!r}: {type(e).__name__}: {e}") from e
        return check_audio(np.concatenate(parts), KOKORO_SAMPLE_RATE, f"kokoro[{v}]", t), KOKORO_SAMPLE_RATE
