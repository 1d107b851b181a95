"""Test utility, not a backend: ``coqui_random_vits`` writes a Coqui VITS with random weights.

No trained Coqui weights ship in a registry package and nothing may download from the Coqui hub, so the Coqui code
path (``pipeline.backends.tts.coqui.CoquiBackend``) is exercised by tests/backends/tts/test_coqui.py and timed by
bench/bench_tts.py on models built here. The audio such a model speaks is noise: never use it to make a dataset.
Needs ``coqui-tts`` (and torch); nothing in the pipeline imports this module.
"""
from __future__ import annotations

from pathlib import Path


def coqui_random_vits(out: str | Path, speakers: list[str] | tuple[str, ...] = (), phonemes: bool = False,
                      size: str = "tiny", sample_rate: int = 16000) -> Path:
    """Write a Coqui VITS with random weights (``model.pth`` + ``config.json``) into ``out`` and return the directory.

    For tests and benchmarks of the Coqui code path where no trained Coqui weights can be had (none ship in a registry
    package): ``size="tiny"`` (~0.26 M parameters, loads and speaks noise in well under a second) or ``"full"``
    (Coqui's default VITS architecture, ~40 M parameters, 22.05 kHz like the released VITS voices: its real-time
    factor is that of a trained model of the same architecture). ``speakers`` adds a speaker embedding table;
    ``phonemes`` uses Coqui's espeak-ng phonemizer (en-us) instead of a character vocabulary.
    """
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(init_discriminator=False, use_speaker_embedding=bool(speakers))
    if size == "tiny":
        args = VitsArgs(hidden_channels=16, hidden_channels_ffn_text_encoder=32, num_heads_text_encoder=2,
                        num_layers_text_encoder=1, num_layers_posterior_encoder=1, num_layers_flow=1, use_sdp=False,
                        resblock_kernel_sizes_decoder=[3], resblock_dilation_sizes_decoder=[[1, 3, 5]],
                        upsample_rates_decoder=[8, 8, 4], upsample_initial_channel_decoder=32,
                        upsample_kernel_sizes_decoder=[16, 16, 8], speaker_embedding_channels=8, **common)
    elif size == "full":
        args = VitsArgs(**common)
        sample_rate = 22050
    else:
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    if phonemes:
        text = dict(use_phonemes=True, phonemizer="espeak", phoneme_language="en-us", text_cleaner="phoneme_cleaners")
    else:
        text = dict(use_phonemes=False, phoneme_language="en", text_cleaner="english_cleaners",
                    characters=CharactersConfig(
                        characters_class="TTS.tts.models.vits.VitsCharacters", pad="<PAD>", eos="<EOS>", bos="<BOS>",
                        blank="<BLNK>", characters="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                        punctuations="!'(),-.:;? ", phonemes=None))
    config = VitsConfig(
        model_args=args, add_blank=True, use_speaker_embedding=bool(speakers), speakers=list(speakers),
        # hop length = product of the decoder's upsample rates (256 for both sizes); no silence trimming, so
        # durations follow length_scale exactly
        audio=BaseAudioConfig(sample_rate=sample_rate, hop_length=256, win_length=1024, fft_size=1024,
                              do_trim_silence=False),
        **text,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Vits(config)
    torch.save({"model": model.state_dict()}, out / "model.pth")
    config.save_json(str(out / "config.json"))
    return out
