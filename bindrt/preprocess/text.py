"""CLIP byte-level BPE tokenizer, reproducing the reference's ``SimpleTokenizer``.

Cleaning: ``ftfy.fix_text`` -> ``html.unescape`` twice -> strip -> collapse
whitespace -> lower-case. Words come from the CLIP regex; each word's UTF-8
bytes are mapped to printable unicode symbols and merged with the first 48,894
merges of ``bpe_simple_vocab_16e6.txt.gz`` (shipped as package data, never
downloaded). A sequence is ``[49406] + first 75 tokens + [49407]`` right-padded
with 0 to 77, so a truncated text still ends in the end-of-text token (the text
encoder pools at ``argmax(ids)``, which must be that token).

Special tokens: as in the reference, the strings ``<|startoftext|>`` and
``<|endoftext|>`` typed in a text become the real special tokens (so a user can
end a caption early, and the pooled position moves there). Pass
``special_tokens=False`` to :func:`tokenize` (or ``Tokenizer.encode``) to treat
them as plain text, e.g. for untrusted input.

Bounds: a text longer than ``max_text_chars`` (:mod:`bindrt.preprocess.limits`)
is a LimitError (cleaning is linear in the whole text); words are BPE-merged
with a heap (``n log n``; the reference's loop is quadratic in a word's length)
and only until the context is full. Both give the reference's ids exactly.
"""

from __future__ import annotations

import functools
import gzip
import heapq
import html
from importlib import resources
from typing import Any

import ftfy
import numpy as np
import regex

from bindrt.errors import InputError
from bindrt.layouts import CONTEXT_LENGTH, EOT_TOKEN, PAD_TOKEN, SOT_TOKEN, VOCAB_SIZE  # noqa: F401  (re-exported)

from ._inputs import as_item_list
from .limits import check_max

_NUM_MERGES = 49152 - 256 - 2  # 48,894: the merges CLIP's vocabulary was built from
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_PATTERN = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|" + _WORDS, regex.IGNORECASE)
_PLAIN_PATTERN = regex.compile(_WORDS, regex.IGNORECASE)
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
        """The reference's BPE (merge every occurrence of the lowest-ranked pair, left to right, repeat).

        Same result, in ``n log n``: a heap of (rank, position) over a linked list of
        symbols. One rank's occurrences are merged before any pair they create is
        queued (the reference re-scans only between ranks); a merged pair can never
        re-create its own rank, since the new symbol is longer than both halves.
        """
        if token in _SPECIAL:
            return (token,)
        syms: list[str | None] = list(token[:-1]) + [token[-1] + "</w>"]
        nxt = list(range(1, len(syms))) + [-1]
        prv = list(range(-1, len(syms) - 1))
        ranks = self.bpe_ranks

        def pair(i: int) -> tuple[int, int, str, str] | None:
            j = nxt[i]
            if j < 0:
                return None
            rank = ranks.get((syms[i], syms[j]))  # type: ignore[arg-type]
            return None if rank is None else (rank, i, syms[i], syms[j])  # type: ignore[return-value]

        heap = [p for p in map(pair, range(len(syms) - 1)) if p is not None]
        heapq.heapify(heap)
        while heap:
            rank = heap[0][0]
            touched: list[int] = []
            while heap and heap[0][0] == rank:  # positions in order: left-to-right, non-overlapping
                _, i, first, second = heapq.heappop(heap)
                j = nxt[i]
                if syms[i] != first or j < 0 or syms[j] != second:
                    continue  # stale: one of the two was merged earlier in this round
                syms[i], syms[j] = first + second, None
                nxt[i] = nxt[j]
                if nxt[j] >= 0:
                    prv[nxt[j]] = i
                touched.append(i)
            for i in touched:
                if syms[i] is None:
                    continue
                for k in (prv[i], i):
                    if k >= 0 and syms[k] is not None and (p := pair(k)) is not None:
                        heapq.heappush(heap, p)
        return tuple(sym for sym in syms if sym is not None)

    def encode(self, text: str, *, special_tokens: bool = True, max_tokens: int | None = None) -> list[int]:
        """Text -> BPE token ids, without start/end tokens.

        ``special_tokens=False`` reads ``<|endoftext|>`` etc. as plain text;
        ``max_tokens`` stops once that many ids are known (the first ids of the full encoding).
        """
        pattern = _PATTERN if special_tokens else _PLAIN_PATTERN
        ids: list[int] = []
        for match in pattern.finditer(clean_text(text)):
            symbols = "".join(self.byte_encoder[b] for b in match.group().encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(symbols))
            if max_tokens is not None and len(ids) >= max_tokens:
                return ids[:max_tokens]
        return ids

    def __call__(self, texts: Any, context_length: int = CONTEXT_LENGTH, *, special_tokens: bool = True) -> np.ndarray:
        return tokenize(texts, context_length=context_length, tokenizer=self, special_tokens=special_tokens)


@functools.lru_cache(maxsize=1)
def get_tokenizer() -> Tokenizer:
    """The process-wide tokenizer (loading the merges takes ~0.1 s; do it once)."""
    return Tokenizer()


def tokenize(
    texts: Any, *, context_length: int = CONTEXT_LENGTH, tokenizer: Tokenizer | None = None, special_tokens: bool = True
) -> np.ndarray:
    """A string or list of strings -> ``(B, context_length)`` int64 token ids.

    ``special_tokens=False``: ``<|startoftext|>`` / ``<|endoftext|>`` in a text are plain text.
    """
    seq = [texts] if isinstance(texts, str) else as_item_list(texts, "text")
    tok = tokenizer or get_tokenizer()
    out = np.full((len(seq), context_length), PAD_TOKEN, dtype=np.int64)
    for i, text in enumerate(seq):
        if not isinstance(text, str):
            raise InputError(f"got {type(text).__name__} (expected a str)", modality="text", item=i)
        check_max("max_text_chars", "the text's length in characters", len(text), modality="text", index=i)
        body = tok.encode(text, special_tokens=special_tokens, max_tokens=context_length - 2)
        ids = [SOT_TOKEN] + body + [EOT_TOKEN]
        out[i, : len(ids)] = ids
    return out
