#!/usr/bin/env python3
"""Build the small English sample corpus (``samples/en``) used by ``make dataset LANG=en`` and the tests.

    python scripts/make_sample_corpus.py [--lang en] [--out samples/<lang>] [--skip-human] [--check]

``--lang de|fr|es|it|pt|ja|zh`` builds a synthetic corpus for that language instead (``build_lang``: espeak-ng
voices of both genders at three speeds, Kokoro for ja, noise at known SNR, an English clip, bad files).

What it writes (see samples/README.md for sources, licences and the expected outcome of each file):

* ``audio/``: speech in mixed formats (wav 16 kHz / 22.05 kHz / 44.1 kHz stereo, flac, mp3, ogg, m4a)
  from three kinds of source:
    - real human recordings shipped in Debian packages (``pocketsphinx-testdata``: LibriVox
      "Sense and Sensibility" excerpts and CMU "cards" test utterances; ``alsa-utils``: the
      speaker-test channel announcements), taken from the installed package or fetched with
      ``apt-get download`` + ``dpkg -x`` when not installed;
    - the embedded Piper voice ``en_US-joe-medium`` (male);
    - espeak-ng with female and male variants, several speeds and pitches;
  plus one long (~50 s) multi-utterance file for VAD segmentation, two files with noise at a
  known SNR, and deliberately bad files (empty, corrupt, header-only, silent, truncated, not audio).
* ``manifest.jsonl``: one row per file with the reference text, speaker and labels
  (``labels.expect`` says what the pipeline is expected to do with the file).
* ``instructions.jsonl``: Alpaca-style text instructions for the TTS stage.

Deterministic: fixed seeds for every random draw, Piper run with noise_scale = noise_w = 0 (its
VITS noise is drawn inside the ONNX graph and cannot be seeded), ffmpeg run with bitexact flags.
Piper output may still differ in the last bit on another CPU / onnxruntime build.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 16000  # working / default output rate
SEED = 20240611
PIPER_VOICE = "embedded:piper-en_US-joe-medium"

# --------------------------------------------------------------------------------------------
# Text written for this corpus by the project (CC0).
# --------------------------------------------------------------------------------------------
SENTENCES = {
    "s01": "The library closes early on Sundays, so please return your books before noon.",
    "s02": "My grandmother grows tomatoes, beans and sunflowers in the small garden behind her house.",
    "s03": "If the weather stays dry tomorrow, we will take the bicycles down to the river.",
    "s04": "Could you remind me to call the dentist on Thursday morning?",
    "s05": "The kettle is boiling, and there are fresh biscuits in the blue tin on the shelf.",
    "s06": "Turn left at the second traffic light, and the bakery will be on your right.",
    "s07": "Our flight was delayed by two hours because of heavy snow at the airport.",
    "s08": "She practised the piano every evening until she could play the whole piece from memory.",
    "s09": "A good night's sleep is one of the simplest ways to improve your mood and your memory.",
}
LONG_SENTENCES = [
    "Good morning, and welcome to this short walking tour of the old harbour.",
    "The lighthouse on your left was built more than a hundred years ago, and it still works today.",
    "Fishermen still bring their boats in here every afternoon, usually an hour or so before the tide turns.",
    "If you look closely at the rocks below the wall, you can often see seals resting in the sun.",
    "The market opens at nine o'clock and sells fresh fish, warm bread, honey and local cheese.",
    "Please stay behind the yellow line while the ferry is arriving, and keep children close to you at all times.",
    "In the evening, the whole harbour is lit by hundreds of small lamps along the water.",
    "Thank you for joining us today, and we hope you enjoy the rest of your visit.",
]
SHORT_TEXT = "Okay."
GERMAN_TEXT = "Guten Morgen! Heute ist das Wetter wirklich schön, und wir gehen am Nachmittag spazieren."

INSTRUCTIONS = [
    {"instruction": "Give me three tips for staying focused while studying.", "input": "",
     "output": "Put your phone in another room, study in short blocks with breaks, and write down one clear goal before you start."},
    {"instruction": "I have 3 apples and buy 5 more. How many apples do I have now?", "input": "",
     "output": "You have 8 apples: the 3 you started with plus the 5 you bought."},
    {"instruction": "A jacket costs 80 dollars and is on sale for 25% off. What is the sale price?", "input": "",
     "output": "25% of 80 dollars is 20 dollars, so the jacket costs 60 dollars on sale."},
    {"instruction": "Summarise the following sentence in a few words.",
     "input": "The city council has decided to close the main bridge for repairs during the whole month of August.",
     "output": "The main bridge is closed for repairs in August."},
    {"instruction": "Open https://www.example.com/help/reset-password and tell me what the page is for.", "input": "",
     "output": "It is a help page on the example.com website that explains how to reset your password."},
    {"instruction": "Translate this greeting into French.", "input": "Good evening, how are you?",
     "output": "Bonsoir, comment allez-vous ?"},
    {"instruction": "Name two animals that can live both on land and in water.", "input": "",
     "output": "Frogs and crocodiles can both live on land and in water."},
    {"instruction": "Suggest a name for a small bakery by the sea.", "input": "",
     "output": "How about \"The Salty Loaf\"?"},
    {"instruction": "The meeting starts at 2:30 pm and lasts 90 minutes. When does it end?", "input": "",
     "output": "It ends at 4 pm."},
]

# --------------------------------------------------------------------------------------------
# Real human speech shipped in Debian packages (see samples/README.md for licences).
# --------------------------------------------------------------------------------------------
PS_DIR = "usr/share/pocketsphinx/test/data"
ALSA_DIR = "usr/share/sounds/alsa"
HUMAN_FILES = {
    # key: (Debian package, path inside the package, sha256 of the Debian 12 "bookworm" file)
    "lv0870": ("pocketsphinx-testdata", f"{PS_DIR}/librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
               "b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c"),
    "lv0890": ("pocketsphinx-testdata", f"{PS_DIR}/librivox/sense_and_sensibility_01_austen_64kb-0890.wav",
               "5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10"),
    "lv0930": ("pocketsphinx-testdata", f"{PS_DIR}/librivox/sense_and_sensibility_01_austen_64kb-0930.wav",
               "954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7"),
    "cards005": ("pocketsphinx-testdata", f"{PS_DIR}/cards/005.wav",
                 "090f18f5f76cf8b2b43cd9e6b07823f4685a4742d9a36cd98b174a6586c18cf9"),
    "alsa_fl": ("alsa-utils", f"{ALSA_DIR}/Front_Left.wav",
                "9f97e8458785da2f0aa0ec60bf9cc81520cbf80a4683e83eca9cb5f2958e9fef"),
    "alsa_fc": ("alsa-utils", f"{ALSA_DIR}/Front_Center.wav",
                "0d61518bcd3f13b0c709a5298e939caf698b80d31d71d50475365ee0e5536cc9"),
    "alsa_fr": ("alsa-utils", f"{ALSA_DIR}/Front_Right.wav",
                "1fdea4d7003f1f7d3e48d3521aaab0a112c4ac570b02ddf1813abacac3070f6f"),
}
HUMAN_TEXT = {  # package transcripts (lower case, no punctuation) rewritten in normal orthography
    "lv0870": ("And Mister John Dashwood had then leisure to consider how much there might be prudently in his power to do for them.",
               "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do for them"),
    "lv0890": ("Unless to be rather cold hearted and rather selfish is to be ill disposed.",
               "unless to be rather cold hearted and rather selfish is to be ill disposed"),
    "lv0930": ("He might even have been made amiable himself.", "he might even have been made amiable himself"),
    "cards005": ("Eight of spades, four of clubs, seven of hearts.", "eight of spades four of clubs seven of hearts"),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def human_sources(cache: Path) -> dict[str, Path]:
    """Locate the human recordings: installed package, or ``apt-get download`` + ``dpkg -x`` into ``cache``."""
    found: dict[str, Path] = {}
    for pkg in sorted({p for p, _, _ in HUMAN_FILES.values()}):
        wanted = {k: rel for k, (p, rel, _) in HUMAN_FILES.items() if p == pkg}
        roots = [Path("/"), cache / pkg]
        root = next((r for r in roots if all((r / rel).is_file() for rel in wanted.values())), None)
        if root is None:
            if not shutil.which("apt-get") or not shutil.which("dpkg"):
                raise SystemExit(f"need Debian package {pkg} (apt-get download {pkg}); or run with --skip-human")
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as td:
                print(f"fetching Debian package {pkg} ...", file=sys.stderr)
                r = subprocess.run(["apt-get", "download", pkg], cwd=td, capture_output=True, text=True)
                debs = sorted(Path(td).glob(f"{pkg}_*.deb"))
                if r.returncode != 0 or not debs:
                    raise SystemExit(f"apt-get download {pkg} failed ({r.stderr.strip()[-300:]}); "
                                     "try 'apt-get update' first, or run with --skip-human")
                subprocess.run(["dpkg", "-x", str(debs[0]), str(cache / pkg)], check=True)
            root = cache / pkg
        for k, rel in wanted.items():
            found[k] = root / rel
            if sha256(found[k]) != HUMAN_FILES[k][2]:
                print(f"warning: {found[k]} differs from the Debian 12 file the corpus was built from", file=sys.stderr)
    return found


# --------------------------------------------------------------------------------------------
# Synthesis and signal helpers
# --------------------------------------------------------------------------------------------
def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return x.astype(np.float32)
    import soxr

    return soxr.resample(x.astype(np.float32), sr, target, quality="HQ").astype(np.float32)


def trim(x: np.ndarray, sr: int, pad_s: float = 0.15, thresh: float = 0.01) -> np.ndarray:
    """Trim leading/trailing near-silence, keeping ``pad_s`` of padding."""
    idx = np.flatnonzero(np.abs(x) > thresh)
    if idx.size == 0:
        return x
    pad = int(pad_s * sr)
    return x[max(0, idx[0] - pad): idx[-1] + pad]


class Piper:
    def __init__(self):
        from piper import PiperVoice

        from pipeline.core.model_cache import resolve

        self.voice = PiperVoice.load(resolve(PIPER_VOICE))
        self.sr = self.voice.config.sample_rate

    def __call__(self, text: str, length_scale: float = 1.0) -> tuple[np.ndarray, int]:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(self.voice.synthesize(text, cfg))
        audio = np.concatenate([c.audio_int16_array for c in chunks]).astype(np.float32) / 32768.0
        return trim(audio, self.sr), self.sr


def espeak(text: str, voice: str, speed: int = 160, pitch: int = 50) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "e.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), text],
                       check=True, capture_output=True)
        a, sr = sf.read(out, dtype="float32")
    return trim(a, sr), sr


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def add_noise(clean: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """clean + noise with 10*log10(mean(clean^2) / mean(noise^2)) == snr_db over the whole clip."""
    noise = rng.standard_normal(clean.size).astype(np.float32) if kind == "white" else pink_noise(clean.size, rng)
    p_clean = float(np.mean(clean.astype(np.float64) ** 2))
    noise *= np.sqrt(p_clean / (10 ** (snr_db / 10)) / float(np.mean(noise.astype(np.float64) ** 2)))
    return clean + noise


def normalise(x: np.ndarray, peak: float = 0.8) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m)).astype(np.float32) if m > 0 else x.astype(np.float32)


FFMPEG_CODECS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "48k"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "3"],
    ".m4a": ["-c:a", "aac", "-b:a", "48k"],
}


def write_audio(path: Path, audio: np.ndarray, sr: int) -> None:
    """wav/flac with soundfile (PCM 16); mp3/ogg/m4a through ffmpeg with bitexact flags."""
    audio = np.clip(audio, -1.0, 1.0)
    if path.suffix in {".wav", ".flac"}:
        sf.write(path, audio, sr, subtype="PCM_16", format=path.suffix[1:].upper())
        return
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td) / "in.wav"
        sf.write(tmp, audio, sr, subtype="PCM_16")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(tmp), "-map_metadata", "-1",
                        "-fflags", "+bitexact", "-flags:a", "+bitexact", *FFMPEG_CODECS[path.suffix], str(path)],
                       check=True)


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------
@dataclass
class Item:
    file: str
    text: str | None
    speaker: str | None
    labels: dict = field(default_factory=dict)

    def row(self) -> dict:
        return {"path": f"audio/{self.file}", "text": self.text, "speaker": self.speaker, "labels": self.labels}


def build(out: Path, skip_human: bool, cache: Path) -> list[Item]:
    audio_dir = out / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    items: list[Item] = []

    def emit(file: str, audio: np.ndarray | None, sr: int, text: str | None, speaker: str | None, **labels) -> None:
        if audio is not None:
            write_audio(audio_dir / file, audio, sr)
        items.append(Item(file, text, speaker, {"lang": "en", **labels}))

    # ---- real human speech -------------------------------------------------------------------
    if not skip_human:
        src = human_sources(cache)
        lv = {"source": "human", "gender": "male", "corpus": "LibriVox: Jane Austen, Sense and Sensibility, ch. 1",
              "via": "Debian pocketsphinx-testdata", "licence": "public domain (LibriVox); package BSD-2-Clause",
              "expect": "kept"}
        for key, file in [("lv0870", "human_librivox_0870.flac"), ("lv0890", "human_librivox_0890.mp3"),
                          ("lv0930", "human_librivox_0930.wav")]:
            a, sr = sf.read(src[key], dtype="float32")
            text, orig = HUMAN_TEXT[key]
            emit(file, a, sr, text, "librivox-sas01-reader", **lv, original_file=src[key].name,
                 original_transcript=orig)
        a, sr = sf.read(src["cards005"], dtype="float32")
        text, orig = HUMAN_TEXT["cards005"]
        emit("human_cards_005.ogg", a, sr, text, "cmu-cards-speaker", source="human", gender="male",
             corpus="CMU Sphinx 'cards' test set", via="Debian pocketsphinx-testdata", licence="BSD-2-Clause",
             original_file="cards/005.wav", original_transcript=orig, expect="kept")
        parts = []
        for k in ("alsa_fl", "alsa_fc", "alsa_fr"):
            a, sr = sf.read(src[k], dtype="float32")
            parts += [resample(a, sr, SR), np.zeros(int(0.45 * SR), np.float32)]
        emit("human_alsa_channels.wav", np.concatenate(parts[:-1]), SR, "Front left. Front center. Front right.",
             "alsa-speaker-test-voice", source="human", gender="female", gender_note="estimated from F0 (~210 Hz)",
             corpus="ALSA speaker-test channel announcements (3 clips joined with 0.45 s gaps)",
             via="Debian alsa-utils", licence="GPL-2 (alsa-utils)", expect="kept")

    # ---- Piper (male) ----------------------------------------------------------------------------
    piper = Piper()
    a, sr = piper(SENTENCES["s01"])
    a44 = normalise(resample(a, sr, 44100), 0.7)
    right = 0.75 * np.concatenate([np.zeros(13, np.float32), a44[:-13]])  # a little level/time difference
    emit("piper_joe_44k_stereo.wav", np.stack([a44, right], axis=1), 44100, SENTENCES["s01"], "piper-joe",
         source="piper", gender="male", voice="en_US-joe-medium", channels=2, expect="kept")
    a, sr = piper(SENTENCES["s02"], 1.05)
    emit("piper_joe_s02.m4a", normalise(resample(a, sr, SR), 0.7), SR, SENTENCES["s02"], "piper-joe",
         source="piper", gender="male", voice="en_US-joe-medium", length_scale=1.05, expect="kept")
    a, sr = piper(SENTENCES["s03"], 0.9)
    emit("piper_joe_s03.mp3", normalise(a, 0.6), sr, SENTENCES["s03"], "piper-joe",
         source="piper", gender="male", voice="en_US-joe-medium", length_scale=0.9, expect="kept")

    # ---- espeak-ng (female and male variants) ----------------------------------------------------
    a, sr = espeak(SENTENCES["s04"], "en-us+f3", 155, 55)
    emit("espeak_en-us_f3.wav", normalise(a, 0.7), sr, SENTENCES["s04"], "espeak-en-us+f3",
         source="espeak-ng", gender="female", voice="en-us+f3", speed_wpm=155, pitch=55, expect="kept")
    a, sr = espeak(SENTENCES["s05"], "en-gb+f5", 135, 65)
    emit("espeak_en-gb_f5_slow.flac", normalise(resample(a, sr, SR), 0.6), SR, SENTENCES["s05"], "espeak-en-gb+f5",
         source="espeak-ng", gender="female", voice="en-gb+f5", speed_wpm=135, pitch=65, expect="kept")
    a, sr = espeak(SENTENCES["s06"], "en-us+m3", 185, 35)
    emit("espeak_en-us_m3_fast.ogg", normalise(resample(a, sr, SR), 0.7), SR, SENTENCES["s06"], "espeak-en-us+m3",
         source="espeak-ng", gender="male", voice="en-us+m3", speed_wpm=185, pitch=35, expect="kept")

    # ---- known SNR -------------------------------------------------------------------------------
    a, sr = espeak(SENTENCES["s07"], "en-us+f2", 160, 50)
    clean = normalise(resample(a, sr, SR), 0.5)
    emit("noisy_snr5_white_espeak_f2.wav", normalise(add_noise(clean, 5.0, "white", rng), 0.9), SR, SENTENCES["s07"],
         "espeak-en-us+f2", source="espeak-ng", gender="female", voice="en-us+f2", snr_db=5.0, noise="white",
         snr_definition="10*log10(mean(clean^2)/mean(noise^2)) over the whole clip", expect="kept (its ASR text is poor at 5 dB)")
    a, sr = piper(SENTENCES["s08"])
    clean = normalise(resample(a, sr, SR), 0.5)
    emit("noisy_snr20_pink_piper.flac", normalise(add_noise(clean, 20.0, "pink", rng), 0.7), SR, SENTENCES["s08"],
         "piper-joe", source="piper", gender="male", voice="en_US-joe-medium", snr_db=20.0, noise="pink",
         snr_definition="10*log10(mean(clean^2)/mean(noise^2)) over the whole clip", expect="kept")

    # ---- long file: 8 utterances with pauses, light pink noise -------------------------------------
    pieces, timeline, t = [np.zeros(int(0.5 * SR), np.float32)], [], 0.5
    for i, text in enumerate(LONG_SENTENCES):
        ls = [1.1, 1.2, 1.05, 1.15][i % 4]
        a, sr = piper(text, ls)
        a = normalise(resample(a, sr, SR), float(rng.uniform(0.45, 0.75)))
        timeline.append({"start_s": round(t, 3), "end_s": round(t + a.size / SR, 3), "text": text})
        pieces.append(a)
        t += a.size / SR
        gap = float(rng.uniform(0.6, 1.2)) if i < len(LONG_SENTENCES) - 1 else 0.5
        pieces.append(np.zeros(int(round(gap * SR)), np.float32))
        t += int(round(gap * SR)) / SR
    clean = np.concatenate(pieces)
    p_speech = float(np.mean(np.concatenate(pieces[1::2]).astype(np.float64) ** 2))
    noise = pink_noise(clean.size, rng) * np.float32(10 ** (-50 / 20))  # -50 dBFS RMS pink noise
    snr = 10 * np.log10(p_speech / float(np.mean(noise.astype(np.float64) ** 2)))
    emit("long_harbour_tour_piper.ogg", clean + noise, SR, " ".join(LONG_SENTENCES), "piper-joe",
         source="piper", gender="male", voice="en_US-joe-medium", utterances=timeline, noise="pink",
         snr_db=round(float(snr), 1), snr_definition="speech-only power over noise power", expect="kept (segmented by VAD)")

    # ---- files the ASR stage or the duration filter should reject ---------------------------------
    a, sr = espeak(GERMAN_TEXT, "de+f4", 160, 50)
    emit("espeak_de_f4_german.ogg", normalise(resample(a, sr, SR), 0.7), SR, GERMAN_TEXT, "espeak-de+f4",
         source="espeak-ng", gender="female", voice="de+f4", expect="rejected: language_mismatch (asr)")
    items[-1].labels["lang"] = "de"
    a, sr = espeak(SHORT_TEXT, "en-us+m1", 170, 50)
    emit("too_short.wav", normalise(resample(a, sr, SR), 0.7), SR, SHORT_TEXT, "espeak-en-us+m1",
         source="espeak-ng", gender="male", voice="en-us+m1", expect="rejected: too_short (ingest)")

    # ---- bad files ---------------------------------------------------------------------------------
    (audio_dir / "empty.wav").write_bytes(b"")
    emit("empty.wav", None, SR, None, None, expect="rejected: empty (ingest)")
    # random bytes without 0xFF, so that no MPEG frame sync (0xFFE...) can occur by chance
    (audio_dir / "corrupt.mp3").write_bytes(np.random.default_rng(SEED + 1).integers(0, 255, 24000, dtype=np.uint8).tobytes())
    emit("corrupt.mp3", None, SR, None, None, expect="rejected: corrupt (ingest)")
    sf.write(audio_dir / "header_only.wav", np.zeros((0,), np.float32), SR, subtype="PCM_16")
    emit("header_only.wav", None, SR, None, None, expect="rejected: zero_length (ingest)")
    emit("silence.wav", np.zeros(5 * SR, np.float32), SR, None, None, expect="rejected: silent (ingest)")
    a, sr = piper(SENTENCES["s09"])
    full = audio_dir / "truncated.flac"
    write_audio(full, normalise(resample(a, sr, SR), 0.7), SR)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    emit("truncated.flac", None, SR, None, "piper-joe", source="piper", gender="male", voice="en_US-joe-medium",
         original_text=SENTENCES["s09"], truncated_bytes=f"{len(data) // 2}/{len(data)}",
         expect="rejected: corrupt (ingest; damaged FLAC, see README)")
    (audio_dir / "notes.txt").write_text("Recording notes: session 2, room B, laptop microphone. Not an audio file.\n")
    emit("notes.txt", None, SR, None, None, expect="rejected: not_audio (ingest)")

    for it in items:
        it.labels = {k: v for k, v in it.labels.items() if v is not None}
        if it.labels.get("source") is None:
            it.labels.pop("lang", None)
    return items


# ============================================================================================
# Other languages (issue 16): ``--lang de|fr|es|it|pt|ja|zh`` builds samples/<lang>/
# ============================================================================================
# Sentences and instructions written for this project (CC0). Eight sentences per language: six clean clips
# (voices of both genders, three speeds, four formats) and two with noise at a known SNR.
LANG_SENTENCES = {
    "de": ["Die Bibliothek schließt am Sonntag früh, bitte bringt eure Bücher vor zwölf Uhr zurück.",
           "Meine Großmutter pflanzt Tomaten und Bohnen in dem kleinen Garten hinter ihrem Haus.",
           "Wenn das Wetter morgen trocken bleibt, fahren wir mit den Fahrrädern zum Fluss.",
           "Kannst du mich daran erinnern, am Donnerstag den Zahnarzt anzurufen?",
           "Das Wasser kocht schon, und in der blauen Dose stehen frische Kekse.",
           "Biegen Sie an der zweiten Ampel links ab, dann ist die Bäckerei auf der rechten Seite.",
           "Unser Flug hatte zwei Stunden Verspätung, weil am Flughafen viel Schnee lag.",
           "Sie hat jeden Abend Klavier geübt, bis sie das ganze Stück auswendig spielen konnte."],
    "fr": ["La bibliothèque ferme tôt le dimanche, alors rapportez vos livres avant midi.",
           "Ma grand-mère cultive des tomates et des haricots dans le petit jardin derrière sa maison.",
           "S'il fait beau demain, nous irons à vélo jusqu'à la rivière.",
           "Peux-tu me rappeler d'appeler le dentiste jeudi matin ?",
           "L'eau bout déjà, et il y a des biscuits frais dans la boîte bleue.",
           "Tournez à gauche au deuxième feu, et la boulangerie sera sur votre droite.",
           "Notre vol a eu deux heures de retard à cause de la neige à l'aéroport.",
           "Elle a travaillé le piano chaque soir jusqu'à pouvoir jouer tout le morceau de mémoire."],
    "es": ["La biblioteca cierra temprano los domingos, así que devuelve tus libros antes del mediodía.",
           "Mi abuela cultiva tomates y judías en el pequeño jardín detrás de su casa.",
           "Si mañana no llueve, iremos en bicicleta hasta el río.",
           "¿Puedes recordarme que llame al dentista el jueves por la mañana?",
           "El agua ya está hirviendo, y hay galletas frescas en la lata azul.",
           "Gire a la izquierda en el segundo semáforo y la panadería estará a su derecha.",
           "Nuestro vuelo se retrasó dos horas por la nieve en el aeropuerto.",
           "Practicó el piano cada tarde hasta que pudo tocar la pieza entera de memoria."],
    "it": ["La biblioteca chiude presto la domenica, quindi restituite i libri prima di mezzogiorno.",
           "Mia nonna coltiva pomodori e fagioli nel piccolo orto dietro la sua casa.",
           "Se domani il tempo resta asciutto, andremo al fiume in bicicletta.",
           "Puoi ricordarmi di chiamare il dentista giovedì mattina?",
           "L'acqua sta già bollendo, e ci sono biscotti freschi nella scatola blu.",
           "Giri a sinistra al secondo semaforo e la panetteria sarà sulla destra.",
           "Il nostro volo è partito con due ore di ritardo per la neve all'aeroporto.",
           "Ha studiato il pianoforte ogni sera finché non ha potuto suonare tutto il brano a memoria."],
    "pt": ["A biblioteca fecha cedo aos domingos, então devolva os seus livros antes do meio-dia.",
           "A minha avó planta tomates e feijões no pequeno jardim atrás da casa dela.",
           "Se o tempo continuar seco amanhã, vamos de bicicleta até o rio.",
           "Você pode me lembrar de ligar para o dentista na quinta-feira de manhã?",
           "A água já está fervendo, e há biscoitos frescos na lata azul.",
           "Vire à esquerda no segundo semáforo, e a padaria vai estar à sua direita.",
           "O nosso voo atrasou duas horas por causa da neve no aeroporto.",
           "Ela praticou piano todas as noites até conseguir tocar a peça inteira de cor."],
    "ja": ["図書館は日曜日に早く閉まるので、お昼までに本を返してください。",
           "祖母は家の裏の小さな庭でトマトと豆を育てています。",
           "明日も晴れたら、自転車で川まで行きましょう。",
           "木曜日の朝に歯医者さんに電話するのを思い出させてくれますか。",
           "お湯がもう沸いていて、青い缶には新しいクッキーが入っています。",
           "二つ目の信号を左に曲がると、パン屋さんは右側にあります。",
           "空港で雪がたくさん降ったので、私たちの飛行機は二時間遅れました。",
           "彼女は曲を全部覚えて弾けるようになるまで、毎晩ピアノを練習しました。"],
    "zh": ["图书馆星期天关门很早，请在中午以前还书。",
           "我奶奶在房子后面的小院子里种西红柿和豆子。",
           "如果明天天气好，我们就骑自行车去河边。",
           "你能提醒我星期四早上给牙医打电话吗？",
           "水已经开了，蓝色的盒子里有新鲜的饼干。",
           "在第二个红绿灯向左转，面包店就在你的右边。",
           "因为机场下了大雪，我们的航班晚了两个小时。",
           "她每天晚上练习钢琴，直到能把整首曲子背下来。"],
}
LANG_SHORT = {"de": "Ja.", "fr": "Oui.", "es": "Sí.", "it": "Sì.", "pt": "Sim.", "ja": "はい。", "zh": "好。"}
LANG_INSTRUCTIONS = {
    "de": [("Nenne mir drei Tipps, wie man beim Lernen konzentriert bleibt.", "", "Leg das Handy weg, lerne in kurzen Abschnitten mit Pausen und schreib vorher ein klares Ziel auf."),
           ("Ich habe 3 Äpfel und kaufe 5 dazu. Wie viele Äpfel habe ich jetzt?", "", "Du hast jetzt 8 Äpfel."),
           ("Fasse den folgenden Satz in wenigen Worten zusammen.", "Der Stadtrat hat beschlossen, die Hauptbrücke im ganzen August für Reparaturen zu sperren.", "Die Hauptbrücke ist im August wegen Reparaturen gesperrt."),
           ("Öffne https://www.example.com/hilfe und sag mir, wofür die Seite ist.", "", "Es ist eine Hilfeseite der Website example.com."),
           ("Nenne zwei Tiere, die an Land und im Wasser leben können.", "", "Frösche und Krokodile können an Land und im Wasser leben."),
           ("Schlag einen Namen für eine kleine Bäckerei am Meer vor.", "", "Wie wäre es mit \"Salzbrot am Strand\"?")],
    "fr": [("Donne-moi trois conseils pour rester concentré en étudiant.", "", "Éloigne ton téléphone, travaille par courtes périodes avec des pauses et fixe-toi un objectif clair."),
           ("J'ai 3 pommes et j'en achète 5. Combien de pommes ai-je maintenant ?", "", "Tu as maintenant 8 pommes."),
           ("Résume la phrase suivante en quelques mots.", "Le conseil municipal a décidé de fermer le pont principal pour travaux pendant tout le mois d'août.", "Le pont principal est fermé pour travaux en août."),
           ("Ouvre https://www.example.com/aide et dis-moi à quoi sert la page.", "", "C'est une page d'aide du site example.com."),
           ("Cite deux animaux qui peuvent vivre sur terre et dans l'eau.", "", "Les grenouilles et les crocodiles vivent sur terre et dans l'eau."),
           ("Propose un nom pour une petite boulangerie au bord de la mer.", "", "Que penses-tu de « La Miche Salée » ?")],
    "es": [("Dame tres consejos para mantener la concentración al estudiar.", "", "Deja el móvil en otra habitación, estudia en bloques cortos con pausas y anota un objetivo claro."),
           ("Tengo 3 manzanas y compro 5 más. ¿Cuántas manzanas tengo ahora?", "", "Ahora tienes 8 manzanas."),
           ("Resume la siguiente frase en pocas palabras.", "El ayuntamiento ha decidido cerrar el puente principal por obras durante todo el mes de agosto.", "El puente principal cierra por obras en agosto."),
           ("Abre https://www.example.com/ayuda y dime para qué sirve la página.", "", "Es una página de ayuda del sitio example.com."),
           ("Nombra dos animales que puedan vivir en tierra y en el agua.", "", "Las ranas y los cocodrilos viven en tierra y en el agua."),
           ("Sugiere un nombre para una pequeña panadería junto al mar.", "", "¿Qué tal \"El Pan Salado\"?")],
    "it": [("Dammi tre consigli per restare concentrato mentre studio.", "", "Metti il telefono in un'altra stanza, studia a blocchi brevi con pause e scrivi un obiettivo chiaro."),
           ("Ho 3 mele e ne compro altre 5. Quante mele ho adesso?", "", "Adesso hai 8 mele."),
           ("Riassumi la frase seguente in poche parole.", "Il consiglio comunale ha deciso di chiudere il ponte principale per lavori per tutto il mese di agosto.", "Il ponte principale è chiuso per lavori ad agosto."),
           ("Apri https://www.example.com/aiuto e dimmi a cosa serve la pagina.", "", "È una pagina di aiuto del sito example.com."),
           ("Nomina due animali che possono vivere sulla terra e nell'acqua.", "", "Le rane e i coccodrilli vivono sulla terra e nell'acqua."),
           ("Suggerisci un nome per un piccolo forno in riva al mare.", "", "Che ne dici di \"Il Pane Salato\"?")],
    "pt": [("Dê-me três dicas para manter a concentração ao estudar.", "", "Deixe o celular em outro cômodo, estude em blocos curtos com pausas e anote um objetivo claro."),
           ("Tenho 3 maçãs e compro mais 5. Quantas maçãs tenho agora?", "", "Agora você tem 8 maçãs."),
           ("Resuma a frase seguinte em poucas palavras.", "A prefeitura decidiu fechar a ponte principal para obras durante todo o mês de agosto.", "A ponte principal fecha para obras em agosto."),
           ("Abra https://www.example.com/ajuda e diga-me para que serve a página.", "", "É uma página de ajuda do site example.com."),
           ("Cite dois animais que podem viver na terra e na água.", "", "Sapos e crocodilos vivem na terra e na água."),
           ("Sugira um nome para uma pequena padaria à beira-mar.", "", "Que tal \"O Pão Salgado\"?")],
    "ja": [("勉強中に集中するためのコツを三つ教えてください。", "", "スマホを別の部屋に置き、休憩を入れて短く区切り、始める前に目標を一つ書きましょう。"),
           ("りんごが3個あって、5個買いました。今りんごは何個ありますか。", "", "今は8個です。"),
           ("次の文を短くまとめてください。", "市議会は、八月の間ずっと修理のために大きな橋を通行止めにすることを決めました。", "大きな橋は八月に修理で通行止めになります。"),
           ("https://www.example.com/help を開いて、何のページか教えてください。", "", "example.com のヘルプページです。"),
           ("陸でも水の中でも暮らせる動物を二つ挙げてください。", "", "カエルとワニです。"),
           ("海辺の小さなパン屋さんの名前を考えてください。", "", "「しおかぜベーカリー」はどうでしょう。")],
    "zh": [("给我三个学习时保持专注的建议。", "", "把手机放到别的房间，分成短时间学习并适当休息，开始前写下一个明确的目标。"),
           ("我有3个苹果，又买了5个。我现在有几个苹果？", "", "你现在有8个苹果。"),
           ("用几个字概括下面这句话。", "市政府决定整个八月关闭主桥进行维修。", "主桥八月关闭维修。"),
           ("打开 https://www.example.com/help 告诉我这个页面是做什么的。", "", "这是 example.com 网站的帮助页面。"),
           ("说出两种既能在陆地上又能在水里生活的动物。", "", "青蛙和鳄鱼。"),
           ("给海边的一家小面包店起个名字。", "", "叫“海风面包房”怎么样？")],
}
# espeak-ng voice per language (the phonemizer / synthesis voice; + variants give the gender)
LANG_ESPEAK = {"de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt-br", "ja": "ja", "zh": "cmn-latn-pinyin"}
# the six clean clips: (voice variant or Kokoro style, gender, espeak wpm or Kokoro speed, file suffix)
CLEAN_PLAN = [("m3", "male", 140, ".wav"), ("f3", "female", 140, ".flac"), ("f5", "female", 120, ".ogg"),
              ("m1", "male", 165, ".mp3"), ("f2", "female", 150, ".flac"), ("m7", "male", 130, ".ogg")]
KOKORO_PLAN = [("jf_alpha", "female", 1.0, ".wav"), ("jm_kumo", "male", 1.0, ".flac"), ("jf_gongitsune", "female", 0.85, ".ogg"),
               ("jm_kumo", "male", 1.2, ".mp3"), ("espeak:f3", "female", 140, ".flac"), ("espeak:m3", "male", 130, ".ogg")]


def kokoro_ja(text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
    from pipeline.backends.tts.kokoro import KokoroBackend

    kb = _KOKORO.get("ja")
    if kb is None:
        kb = _KOKORO["ja"] = KokoroBackend(voices=["jf_alpha", "jf_gongitsune", "jm_kumo"], phonemizer_voice="ja", speed=1.0)
    a, sr = kb.synthesize(text, voice, 1.0 / speed)
    return trim(a, sr), sr


_KOKORO: dict = {}


def espeak_lang(text: str, lang: str, variant: str, wpm: int) -> tuple[np.ndarray, int]:
    from pipeline.core.text import reading

    return espeak(reading(text, lang), f"{LANG_ESPEAK[lang]}+{variant}", wpm, 50)


def build_lang(out: Path, lang: str) -> list[Item]:
    """samples/<lang>/: 6 clean clips (both genders, 3 speeds, 4 formats), 2 noisy (SNR 20 pink, 5 white),
    1 English clip (rejected: language_mismatch), 1 too short, 3 bad files."""
    audio_dir = out / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    audio_dir.mkdir(parents=True)
    rng = np.random.default_rng(SEED + sum(map(ord, lang)))
    sents, items = LANG_SENTENCES[lang], []

    def emit(file, audio, sr, text, speaker, **labels):
        if audio is not None:
            write_audio(audio_dir / file, audio, sr)
        items.append(Item(file, text, speaker, {"lang": lang, **labels} if labels.get("source") else labels))

    def synth(i, spec):
        voice, gender, speed, _ = spec
        if lang == "ja" and not voice.startswith("espeak:"):
            a, sr = kokoro_ja(sents[i], voice, speed)
            return a, sr, f"kokoro-{voice}", {"source": "kokoro", "voice": voice, "kokoro_speed": speed}
        v = voice.split(":")[-1]
        a, sr = espeak_lang(sents[i], lang, v, speed)
        return a, sr, f"espeak-{LANG_ESPEAK[lang]}+{v}", {"source": "espeak-ng", "voice": f"{LANG_ESPEAK[lang]}+{v}", "speed_wpm": speed}

    plan = KOKORO_PLAN if lang == "ja" else CLEAN_PLAN
    for i, spec in enumerate(plan):
        a, sr, spk, lab = synth(i, spec)
        kind = lab["source"].split("-")[0]
        emit(f"{kind}_{i + 1:02d}_{spec[1]}{spec[3]}", normalise(resample(a, sr, SR), 0.7), SR, sents[i], spk,
             gender=spec[1], **lab, expect="kept")
    for i, (snr, kind, spec) in zip((6, 7), [(20.0, "pink", plan[0]), (5.0, "white", plan[1])]):
        a, sr, spk, lab = synth(i, spec)
        clean = normalise(resample(a, sr, SR), 0.5)
        emit(f"noisy_snr{snr:.0f}_{kind}_{spec[1]}.flac", normalise(add_noise(clean, snr, kind, rng), 0.8), SR, sents[i], spk,
             gender=spec[1], **lab, snr_db=snr, noise=kind,
             snr_definition="10*log10(mean(clean^2)/mean(noise^2)) over the whole clip",
             expect="kept" if snr >= 10 else "kept or rejected at ASR (5 dB: Whisper base often fails)")
    a, sr = espeak(SENTENCES["s04"], "en-us+m3", 150, 50)
    emit("english_espeak_m3.ogg", normalise(resample(a, sr, SR), 0.7), SR, SENTENCES["s04"], "espeak-en-us+m3",
         source="espeak-ng", gender="male", voice="en-us+m3", expect="rejected: language_mismatch (asr)")
    items[-1].labels["lang"] = "en"
    a, sr = espeak_lang(LANG_SHORT[lang], lang, "m3", 170)
    emit("too_short.wav", normalise(resample(a, sr, SR), 0.7), SR, LANG_SHORT[lang], f"espeak-{LANG_ESPEAK[lang]}+m3",
         source="espeak-ng", gender="male", voice=f"{LANG_ESPEAK[lang]}+m3", expect="rejected: too_short (ingest)")
    (audio_dir / "empty.wav").write_bytes(b"")
    emit("empty.wav", None, SR, None, None, expect="rejected: empty (ingest)")
    (audio_dir / "corrupt.mp3").write_bytes(np.random.default_rng(SEED + 1).integers(0, 255, 24000, dtype=np.uint8).tobytes())
    emit("corrupt.mp3", None, SR, None, None, expect="rejected: corrupt (ingest)")
    emit("silence.wav", np.zeros(4 * SR, np.float32), SR, None, None, expect="rejected: silent (ingest)")
    return items


def write_lang(out: Path, lang: str) -> list[Item]:
    items = build_lang(out, lang)
    with open(out / "manifest.jsonl", "w") as f:
        for it in items:
            f.write(json.dumps(it.row(), ensure_ascii=False) + "\n")
    with open(out / "instructions.jsonl", "w") as f:
        for ins, inp, outp in LANG_INSTRUCTIONS[lang]:
            f.write(json.dumps({"instruction": ins, "input": inp, "output": outp}, ensure_ascii=False) + "\n")
    return items


def describe(out: Path, items: list[Item]) -> list[dict]:
    rows = []
    for it in items:
        p = out / "audio" / it.file
        info = {"file": it.file, "bytes": p.stat().st_size, "duration_s": None, "sr": None, "ch": None}
        try:
            i = sf.info(p)
            info.update(duration_s=round(i.duration, 2), sr=i.samplerate, ch=i.channels)
        except Exception:
            r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=sample_rate,channels:format=duration",
                                "-of", "json", str(p)], capture_output=True, text=True)
            try:
                j = json.loads(r.stdout)
                info.update(duration_s=round(float(j["format"]["duration"]), 2), sr=int(j["streams"][0]["sample_rate"]),
                            ch=j["streams"][0]["channels"])
            except Exception:
                pass
        rows.append({**info, "expect": it.labels.get("expect")})
    return rows


def check(out: Path, items: list[Item]) -> bool:
    """Decode every file with ffmpeg and soundfile and compare with the expectation."""
    ok = True
    for it in items:
        p = out / "audio" / it.file
        r = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(p), "-f", "null", "-"], capture_output=True, text=True)
        ff = "ok" if r.returncode == 0 and not r.stderr.strip() else ("errors" if r.returncode == 0 else "fail")
        try:
            n = len(sf.read(p, dtype="float32")[0])
            sfr = "ok" if n > 0 else "0 frames"
        except Exception:
            sfr = "fail"
        exp = it.labels["expect"]
        good = exp.startswith("kept")
        bad = (good and ff != "ok") or (not good and it.file in {"empty.wav", "corrupt.mp3"} and ff == "ok")
        ok &= not bad
        print(f"{'!!' if bad else '  '} {it.file:34s} ffmpeg={ff:6s} soundfile={sfr:8s} expect={exp}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", default="en", choices=["en", *sorted(LANG_SENTENCES)],
                    help="corpus language (en: the English corpus below; others: synthetic corpora, see samples/<lang>/README.md)")
    ap.add_argument("--out", type=Path, default=None, help="default: samples/<lang>")
    ap.add_argument("--skip-human", action="store_true", help="leave out the human recordings (no Debian packages needed)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("SPEECHINSTRUCT_HOME", Path.home() / ".cache" / "speechinstruct")) / "debs",
                    help="where fetched Debian packages are unpacked")
    ap.add_argument("--check", action="store_true", help="after building, decode every file and compare with expectations")
    args = ap.parse_args()

    out: Path = args.out or ROOT / "samples" / args.lang
    out.mkdir(parents=True, exist_ok=True)
    if args.lang != "en":
        items = write_lang(out, args.lang)
    else:
        items = build(out, args.skip_human, args.cache)
        with open(out / "manifest.jsonl", "w") as f:
            for it in items:
                f.write(json.dumps(it.row(), ensure_ascii=False) + "\n")
        with open(out / "instructions.jsonl", "w") as f:
            for rec in INSTRUCTIONS:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    rows = describe(out, items)
    total = sum(r["bytes"] for r in rows)
    print(f"{'file':34s} {'bytes':>8s} {'dur_s':>6s} {'sr':>6s} ch  expect")
    for r in rows:
        print(f"{r['file']:34s} {r['bytes']:8d} {r['duration_s'] if r['duration_s'] is not None else '-':>6} "
              f"{r['sr'] or '-':>6} {r['ch'] or '-':>2}  {r['expect']}")
    print(f"{len(rows)} files, {total / 1e6:.2f} MB of audio in {out / 'audio'}")
    if args.check and not check(out, items):
        print("some files did not decode as expected", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
