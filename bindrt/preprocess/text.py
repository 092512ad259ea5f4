"""CLIP byte-level BPE tokenizer, reproducing the reference's ``SimpleTokenizer``.

Cleaning: ``ftfy.fix_text`` -> ``html.unescape`` twice -> strip -> collapse
whitespace -> lower-case. Words come from the CLIP regex; each word's UTF-8
bytes are mapped to printable unicode symbols and merged with the first 48,894
merges of ``bpe_simple_vocab_16e6.txt.gz`` (shipped as package data, never
downloaded). A sequence is ``[49406] + first 75 tokens + [49407]`` right-padded
with 0 to 77, so a truncated text still ends in the end-of-text token (the text
encoder pools at ``argmax(ids)``, which must be that token).
"""

from __future__ import annotations

import functools
import gzip
import html
from importlib import resources
from typing import Any

import ftfy
import numpy as np
import regex

from bindrt.errors import InputError

from ._inputs import as_item_list

CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
SOT_TOKEN = 49406
EOT_TOKEN = 49407
_NUM_MERGES = 49152 - 256 - 2  # 48,894: the merges CLIP's vocabulary was built from
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode symbol table (avoids whitespace/control chars in BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def clean_text(text: str) -> str:
    """The reference's basic_clean + whitespace_clean + lower()."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class Tokenizer:
    """CLIP BPE tokenizer; use :func:`get_tokenizer` for the shared cached instance."""

    def __init__(self, merges_text: str | None = None):
        if merges_text is None:
            blob = resources.files(__package__).joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
            merges_text = gzip.decompress(blob).decode("utf-8")
        lines = merges_text.split("\n")[1 : _NUM_MERGES + 1]  # line 0 is a version header
        merges = [tuple(line.split()) for line in lines]
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder: dict[str, int] = {tok: i for i, tok in enumerate(vocab)}
        self.bpe_ranks: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        # Bounded cache per instance (the reference's dict grows without limit).
        self._bpe = functools.lru_cache(maxsize=1 << 16)(self._bpe_uncached)

    def _bpe_uncached(self, token: str) -> tuple[str, ...]:
        if token in ("<|startoftext|>", "<|endoftext|>"):
            return (token,)
        word: tuple[str, ...] = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text: str) -> list[int]:
        """Text -> BPE token ids, without start/end tokens or truncation."""
        ids: list[int] = []
        for word in _PATTERN.findall(clean_text(text)):
            symbols = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(symbols))
        return ids

    def __call__(self, texts: Any, context_length: int = CONTEXT_LENGTH) -> np.ndarray:
        return tokenize(texts, context_length=context_length, tokenizer=self)


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The process-wide tokenizer (loading the merges takes ~0.1 s; do it once)."""
    return Tokenizer()


def tokenize(texts: Any, *, context_length: int = CONTEXT_LENGTH, tokenizer: Tokenizer | None = None) -> np.ndarray:
    """A string or list of strings -> ``(B, context_length)`` int64 token ids."""
    seq = [texts] if isinstance(texts, str) else as_item_list(texts, "text")
    tok = tokenizer or get_tokenizer()
    out = np.zeros((len(seq), context_length), dtype=np.int64)
    for i, text in enumerate(seq):
        if not isinstance(text, str):
            raise InputError(f"got {type(text).__name__} (expected a str)", modality="text", item=i)
        ids = [SOT_TOKEN] + tok.encode(text)[: context_length - 2] + [EOT_TOKEN]
        out[i, : len(ids)] = ids
    return out
