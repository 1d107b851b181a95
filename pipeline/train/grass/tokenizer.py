"""A transformers WhisperTokenizer built offline from the BPE ranks bundled with openai-whisper."""
from __future__ import annotations

from pathlib import Path


def whisper_tokenizer_from_openai(multilingual: bool = True, num_languages: int = 99):
    """A transformers ``WhisperTokenizer`` built offline from the BPE ranks bundled with the openai-whisper
    package (``whisper/assets/*.tiktoken``): the same ids as openai's tokenizer and as the hub's
    ``openai/whisper-*`` tokenizers (special tokens in openai's order, language tokens included also in the
    English-only vocabulary: 51864 ids, multilingual 51865, large-v3 num_languages=100). For tests and for converting
    openai-whisper checkpoints; production models bring their own tokenizer."""
    import whisper
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from whisper.tokenizer import LANGUAGES

    path = str(Path(whisper.__file__).parent / "assets" / ("multilingual.tiktoken" if multilingual else "gpt2.tiktoken"))
    vocab, merges = TikTokenConverter(path).extract_vocab_merges_from_model(path)
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{lang}|>" for lang in list(LANGUAGES)[:num_languages]],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    tok.add_tokens([AddedToken(s, special=True, normalized=False) for s in specials], special_tokens=True)
    tok.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(1501)])
    return tok

