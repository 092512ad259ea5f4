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
is a LimitError (cleaning is linear in the whole text); only a text's first
``context_length - 2`` words are BPE-merged (each gives at least one token).

Speed (the reference's ids exactly, ``benchmarks/preprocess``): a text of printable
ASCII without ``&`` skips ftfy and ``html.unescape`` (both leave such text unchanged);
a batch's new words (up to ``_VECTOR_MAX_BYTES`` bytes) are BPE-merged together in
numpy, one merge round of every word per step; longer words go through a heap
(``n log n``; the reference's loop is quadratic in a word's length). A word's ids
are cached (``_CACHE_WORDS`` words per tokenizer, oldest dropped first).
"""

from __future__ import annotations

import functools
import gzip
import heapq
import html
import re
from importlib import resources
from typing import Any

import ftfy
import numpy as np
import regex

from bindrt.errors import InputError
from bindrt.layouts import CONTEXT_LENGTH, EOT_TOKEN, PAD_TOKEN, SOT_TOKEN, VOCAB_SIZE  # noqa: F401  (re-exported)

from ._inputs import as_item_list
from .limits import check_max, current_media_limits

_NUM_MERGES = 49152 - 256 - 2  # 48,894: the merges CLIP's vocabulary was built from
_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_PATTERN = regex.compile(r"<\|startoftext\|>|<\|endoftext\|>|" + _WORDS, regex.IGNORECASE)
_PLAIN_PATTERN = regex.compile(_WORDS, regex.IGNORECASE)
# The same two on lower-cased printable ASCII (the fast path), with the faster standard-library engine.
_ASCII_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[a-zA-Z]+|[0-9]|[^\sa-zA-Z0-9]+"""
_ASCII_PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|" + _ASCII_WORDS, re.ASCII)
_ASCII_PLAIN_PATTERN = re.compile(_ASCII_WORDS, re.ASCII)
_WHITESPACE = regex.compile(r"\s+")
_PLAIN_ASCII = regex.compile(r"[\x20-\x25\x27-\x7e]*")  # printable ASCII but '&': ftfy and unescape leave it as is
_VECTOR_MAX_BYTES = 64  # longer words take the heap path (the vectorised rounds are one per merge step)
_CACHE_WORDS = 1 << 16


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
    if text.isascii() and _PLAIN_ASCII.fullmatch(text):  # the common case: nothing for ftfy or unescape to do
        return " ".join(text.split()).lower()
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


_NO_MERGE = np.int32(np.iinfo(np.int32).max)  # the rank of a pair that is not a merge


class _MergeTable:
    """Open-addressing hash table of the merges for vectorised lookups (linear probing, multiplicative hash).

    Keys are ``first * vocab + second`` of vocab ids (below 2**32: 49,408**2 is 2.4e9); a key
    sits at its hash slot or in the next ones, and every slot between is taken (slots are
    never emptied), so a lookup stops at the first empty slot.
    """

    BITS = 18  # 262,144 slots for 48,894 merges: a load of 0.19
    EMPTY = np.uint32(0xFFFFFFFF)  # above every key

    def __init__(self, tok: Tokenizer):
        enc = tok.encoder
        v = len(enc)
        assert v * v <= int(self.EMPTY), "vocab too large for 32-bit pair keys"
        self.vocab = np.uint32(v)
        self.byte_ids = np.array([enc[tok.byte_encoder[b]] for b in range(256)], dtype=np.int32)
        pairs = list(tok.bpe_ranks.items())  # a dict: one rank per pair, as the reference looks them up
        keys = np.array([enc[a] * v + enc[b] for (a, b), _ in pairs], dtype=np.uint32)
        ranks = np.array([r for _, r in pairs], dtype=np.int32)
        merged = np.array([enc[a + b] for (a, b), _ in pairs], dtype=np.int32)  # the merged symbol's id
        size = 1 << self.BITS
        self.mask = size - 1
        # One row per slot: (key, rank << 32 | merged id), so a probe is one gather.
        self.slots = np.zeros((size, 2), dtype=np.int64)
        self.slots[:, 0] = int(self.EMPTY)
        self.slots[:, 1] = int(_NO_MERGE) << 32
        home = self._hash(keys)
        value = (ranks.astype(np.int64) << 32) | merged.astype(np.int64)
        pending, probe = np.arange(keys.size), 0
        while pending.size:  # place all keys one probe step at a time; the first of equal slots wins
            slot = (home[pending] + probe) & self.mask
            free = np.flatnonzero(self.slots[slot, 0] == int(self.EMPTY))
            _, first = np.unique(slot[free], return_index=True)
            placed, where = pending[free[first]], slot[free[first]]
            self.slots[where, 0], self.slots[where, 1] = keys[placed], value[placed]
            left = np.ones(pending.size, dtype=bool)
            left[free[first]] = False
            pending, probe = pending[left], probe + 1
        # Every word starts as byte symbols (ids < 512): their pairs from a dense 512 x 512 table.
        b = np.arange(512, dtype=np.int32)
        self.byte_rank, self.byte_merged = self.lookup(np.repeat(b, 512), np.tile(b, 512))

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        return ((keys * np.uint32(0x9E3779B1)) >> np.uint32(32 - self.BITS)).astype(np.intp)  # wraps mod 2**32

    def lookup(self, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rank, merged id) of each pair of vocab ids; rank ``_NO_MERGE`` where the pair is not a merge."""
        key = (first.astype(np.uint32) * self.vocab + second.astype(np.uint32)).astype(np.int64)
        slot = self._hash(key.astype(np.uint32))
        row = self.slots.take(slot, axis=0)
        value = np.where(row[:, 0] == key, row[:, 1], int(_NO_MERGE) << 32)
        todo = np.flatnonzero((row[:, 0] != key) & (row[:, 0] != int(self.EMPTY)))  # an empty slot ends the search
        slot, key = slot[todo], key[todo]
        while todo.size:
            slot = (slot + 1) & self.mask
            row = self.slots.take(slot, axis=0)
            hit = row[:, 0] == key
            value[todo[hit]] = row[hit, 1]
            more = np.flatnonzero(~hit & (row[:, 0] != int(self.EMPTY)))
            todo, slot, key = todo[more], slot[more], key[more]
        rank = (value >> 32).astype(np.int32)
        merged = (value & 0xFFFFFFFF).astype(np.int32)
        return rank, merged


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
        # word -> ids, bounded per instance (the reference's dict grows without limit).
        self._cache: dict[str, tuple[int, ...]] = {}
        self._tables: _MergeTable | None = None  # numpy merge table, built on first use

    def clear_cache(self) -> None:
        """Forget every cached word (benchmarks time the tokenizer cold with it)."""
        self._cache.clear()

    def _merge_tables(self) -> _MergeTable:
        """The merges as a numpy hash table (built on first use): pair of vocab ids -> (rank, merged id)."""
        if self._tables is None:
            self._tables = _MergeTable(self)
        return self._tables

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

    def _bpe_many(self, words: list[str]) -> list[tuple[int, ...]]:
        """The BPE ids of each word (a regex match of the cleaned text, not yet byte-encoded).

        Words up to ``_VECTOR_MAX_BYTES`` bytes are merged together: all their symbols in one
        array, each step finds every word's lowest-ranked pair and merges its occurrences left
        to right (a pair of equal symbols in a run: every other one, as the reference's scan
        does), the reference's loop for all words at once; a word with no mergeable pair left
        is done and leaves the arrays. Longer words take :meth:`_bpe_uncached`.
        """
        out: list[tuple[int, ...] | None] = [None] * len(words)
        enc = self.encoder
        short, data = [], []
        for i, w in enumerate(words):
            if w in _SPECIAL:
                out[i] = (enc[w],)
                continue
            b = w.encode("utf-8")
            if len(b) > _VECTOR_MAX_BYTES:
                out[i] = tuple(enc[t] for t in self._bpe_uncached("".join(self.byte_encoder[c] for c in b)))
            else:
                short.append(i)
                data.append(b)
        if not short:
            return out  # type: ignore[return-value]
        table = self._merge_tables()
        lens = np.fromiter(map(len, data), dtype=np.intp, count=len(data))
        sym = table.byte_ids[np.frombuffer(b"".join(data), dtype=np.uint8)]
        ends = np.cumsum(lens) - 1
        sym[ends] += 256  # the last byte's symbol + "</w>" (the second 256 of the vocab)
        start = np.zeros(sym.size, dtype=bool)  # a word's first symbol
        start[ends[:-1] + 1] = True
        start[0] = True
        word = np.array(short)  # the word (its index in ``out``) of each word still merging, in order
        n = sym.size
        rank = np.full(n, _NO_MERGE, dtype=np.int32)  # rank of the pair starting here (none at a word's end)
        merged = np.zeros(n, dtype=np.int32)  # what that pair merges into
        pair = sym[:-1] * 512 + sym[1:]
        rank[:-1], merged[:-1] = table.byte_rank.take(pair), table.byte_merged.take(pair)
        rank[ends] = _NO_MERGE
        while n:
            starts = np.flatnonzero(start)
            low = np.minimum.reduceat(rank, starts)  # each word's lowest rank; none left: the word is done
            done = low == _NO_MERGE
            best = np.repeat(np.where(done, -1, low), np.diff(starts, append=n))
            cand = rank == best
            if (cand[1:] & cand[:-1]).any():  # a run of equal symbols: merge the 1st, 3rd, ... pair
                idx = np.arange(n)
                first = cand & ~np.concatenate(([False], cand[:-1]))
                cand &= (idx - np.maximum.accumulate(np.where(first, idx, 0))) % 2 == 0
            gone = best < 0  # the symbols of finished words...
            if done.any():
                at = np.flatnonzero(gone)
                self._emit(out, word[done].tolist(), sym.take(at).tolist(), np.flatnonzero(start.take(at)).tolist())
                word = word[~done]
            np.copyto(sym, merged, where=cand)
            gone[1:] |= cand[:-1]  # ...and the right half of each merged pair
            dirty = cand.copy()  # pairs that changed: from each new symbol, and into it
            dirty[:-1] |= cand[1:] & ~start[1:]
            at = np.flatnonzero(~gone)
            sym, rank, merged, start, dirty = (
                sym.take(at),
                rank.take(at),
                merged.take(at),
                start.take(at),
                dirty.take(at),
            )
            n = sym.size
            j = np.flatnonzero(dirty)
            if j.size:
                nxt = np.minimum(j + 1, n - 1)
                r, m = table.lookup(sym.take(j), sym.take(nxt))
                r[(j + 1 >= n) | start.take(nxt)] = _NO_MERGE  # a word's last symbol starts no pair
                rank[j], merged[j] = r, m
        return out  # type: ignore[return-value]

    @staticmethod
    def _emit(out: list, words: list[int], ids: list[int], starts: list[int]) -> None:
        """Store finished words in ``out``: ``ids`` holds their symbols in order, word k's from ``starts[k]``."""
        starts.append(len(ids))
        for k, w in enumerate(words):
            out[w] = tuple(ids[starts[k] : starts[k + 1]])

    def encode_batch(
        self, texts: list[str], *, special_tokens: bool = True, max_tokens: int | None = None
    ) -> list[list[int]]:
        """:meth:`encode` of each text; the batch's new words are BPE-merged together."""
        pattern = _PATTERN if special_tokens else _PLAIN_PATTERN
        ascii_pattern = _ASCII_PATTERN if special_tokens else _ASCII_PLAIN_PATTERN
        plain = _PLAIN_ASCII.fullmatch
        cache = self._cache
        known: dict[str, tuple[int, ...] | None] = {}
        word_lists = []
        for text in texts:
            if text.isascii() and plain(text):  # clean_text's fast path, and the same words
                words = ascii_pattern.findall(" ".join(text.split()).lower())
            else:
                words = pattern.findall(clean_text(text))
            if max_tokens is not None and len(words) > max_tokens:
                words = words[:max_tokens]  # each word gives at least one id
            word_lists.append(words)
            for w in words:
                if w not in known:
                    known[w] = cache.get(w)
        missing = [w for w, ids in known.items() if ids is None]
        if missing:
            for w, ids in zip(missing, self._bpe_many(missing)):
                known[w] = cache[w] = ids
            while len(cache) > _CACHE_WORDS:  # oldest first; another thread (a server's) may evict too
                try:
                    del cache[next(iter(cache))]
                except (KeyError, RuntimeError, StopIteration):
                    break
        rows = []
        for words in word_lists:
            ids = [i for w in words for i in known[w]]  # type: ignore[union-attr]
            rows.append(ids if max_tokens is None else ids[:max_tokens])
        return rows

    def encode(self, text: str, *, special_tokens: bool = True, max_tokens: int | None = None) -> list[int]:
        """Text -> BPE token ids, without start/end tokens.

        ``special_tokens=False`` reads ``<|endoftext|>`` etc. as plain text;
        ``max_tokens``: only the first that many ids (the first ids of the full encoding).
        """
        return self.encode_batch([text], special_tokens=special_tokens, max_tokens=max_tokens)[0]

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
    limit = current_media_limits().max_text_chars  # read once per batch
    for i, text in enumerate(seq):
        if not isinstance(text, str):
            raise InputError(f"got {type(text).__name__} (expected a str)", modality="text", item=i)
        if len(text) > limit:
            check_max("max_text_chars", "the text's length in characters", len(text), modality="text", index=i)
    bodies = tok.encode_batch(seq, special_tokens=special_tokens, max_tokens=context_length - 2)
    for i, body in enumerate(bodies):
        ids = [SOT_TOKEN] + body + [EOT_TOKEN]
        out[i, : len(ids)] = ids
    return out
