"""CLIP tokenizer against the reference's golden ids and known CLIP token ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bindrt.errors import InputError
from bindrt.preprocess import Tokenizer, get_tokenizer, preprocess, tokenize

GOLDEN = Path(__file__).parent / "golden"


def test_golden_text_ids_exact() -> None:
    texts = json.loads((GOLDEN / "inputs.json").read_text())["texts"]
    got = tokenize(texts)
    want = np.load(GOLDEN / "golden.npz")["pre_text"]
    assert got.dtype == np.int64 and got.shape == want.shape == (6, 77)
    np.testing.assert_array_equal(got, want)


def test_golden_texts_one_by_one_and_via_dispatcher() -> None:
    texts = json.loads((GOLDEN / "inputs.json").read_text())["texts"]
    want = np.load(GOLDEN / "golden.npz")["pre_text"]
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(tokenize(t)[0], want[i])
        np.testing.assert_array_equal(preprocess("text", t)[0], want[i])


def test_known_clip_ids() -> None:
    # Published CLIP vocabulary ids: "hello</w>" = 3306, "world</w>" = 1002, "!</w>" = 256.
    ids = tokenize(["Hello   WORLD!", "  hello world ! "])
    np.testing.assert_array_equal(ids[0, :5], [49406, 3306, 1002, 256, 49407])
    np.testing.assert_array_equal(ids[1, :5], [49406, 3306, 1002, 256, 49407])
    assert (ids[:, 5:] == 0).all()


def test_empty_string_and_truncation() -> None:
    ids = tokenize(["", "word " * 200])
    np.testing.assert_array_equal(ids[0, :3], [49406, 49407, 0])
    assert ids[1, 0] == 49406 and ids[1, 76] == 49407 and (ids[1, 1:76] != 0).all()
    assert int(np.argmax(ids[1])) == 76  # the text head pools at argmax: must be the end token


def test_html_entities_and_unicode_fixed() -> None:
    # "&amp;quot;" unescapes twice to a double quote; ftfy fixes mojibake ("cafÃ©" -> "café").
    np.testing.assert_array_equal(tokenize("&amp;quot;x&amp;quot;"), tokenize('"x"'))
    np.testing.assert_array_equal(tokenize("cafÃ©"), tokenize("café"))


def test_tokenizer_cached_and_reusable() -> None:
    assert get_tokenizer() is get_tokenizer()
    tok = get_tokenizer()
    assert tok("a dog barking").shape == (1, 77)
    assert isinstance(tok, Tokenizer) and len(tok.encoder) == 49408


@pytest.mark.parametrize("bad", [b"bytes", 3, None, ["nested"]])
def test_non_string_items_rejected(bad: object) -> None:
    with pytest.raises(InputError) as e:
        tokenize(["fine", bad])
    msg = str(e.value)
    assert "[text item 1]" in msg and "expected a str" in msg and type(bad).__name__ in msg


def test_empty_list_and_non_list() -> None:
    with pytest.raises(InputError, match=r"\[text\] expected at least one item"):
        tokenize([])
    with pytest.raises(InputError, match=r"\[text\] expected a list of items"):
        tokenize(42)


def test_batched_bpe_matches_heap_bpe() -> None:
    """The numpy merge rounds of a batch of words give the heap BPE's ids (runs of equal letters included)."""
    tok = Tokenizer()
    rng = np.random.default_rng(21)
    letters = list("abcdefghijklmnopqrstuvwxyzéßø日")
    words = [
        "".join(rng.choice(letters[: int(rng.integers(1, 31))], size=int(rng.integers(1, 70)))) for _ in range(3000)
    ]
    words += ["aaaa", "aaaaaaa", "eeeeee", "llll", "!!!!", "....", "a", "1", "<|endoftext|>", "x" * 200]
    got = tok._bpe_many(words)
    for word, ids in zip(words, got):
        symbols = "".join(tok.byte_encoder[b] for b in word.encode())
        assert ids == tuple(tok.encoder[t] for t in tok._bpe_uncached(symbols)), word
    texts = [" ".join(words[i : i + 9]) for i in range(0, len(words), 9)]
    cold = tokenize(texts, tokenizer=tok)
    np.testing.assert_array_equal(tokenize(texts, tokenizer=tok), cold)  # cached words: the same ids
    tok.clear_cache()
    np.testing.assert_array_equal(np.stack([tokenize(t, tokenizer=tok)[0] for t in texts[:50]]), cold[:50])
