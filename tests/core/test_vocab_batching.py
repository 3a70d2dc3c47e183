"""Vocabulary, batching plans, schedule and metrics (framework-neutral core)."""

import math

import numpy as np
import pytest

from mlx_rnn.core.batching import classify_batches, lm_chunk, lm_streams
from mlx_rnn.core.metrics import classification_bundle, perplexity_figures
from mlx_rnn.core.schedule import lr_at
from mlx_rnn.core.vocab import TEXT8, VOWELS, Indexer


def test_vocab_order_and_roundtrip():
    assert len(TEXT8) == 27
    assert TEXT8.index_of("a") == 0 and TEXT8.index_of("z") == 25 and TEXT8.index_of(" ") == 26
    assert TEXT8.get_object(26) == " "
    assert TEXT8.index_of("A") == -1
    text = "the quick brown fox "
    ids = TEXT8.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert TEXT8.decode(ids) == text
    assert TEXT8.encode("").shape == (0,)


def test_vocab_rejects_unknown_characters():
    with pytest.raises(ValueError, match="'Q' at position 3"):
        TEXT8.encode("abcQ")
    with pytest.raises(IndexError):
        TEXT8.get_object(27)
    with pytest.raises(ValueError):
        Indexer("aa")


def test_vowels():
    assert [c for c in TEXT8.symbols if c in VOWELS] == list("aeiou")


def test_classify_batches_cover_every_example_once_and_depend_on_seed_and_epoch():
    b = classify_batches(130, 64, seed=0, epoch=0)
    assert [len(x) for x in b] == [64, 64, 2]
    assert sorted(np.concatenate(b).tolist()) == list(range(130))
    again = classify_batches(130, 64, seed=0, epoch=0)
    assert all((x == y).all() for x, y in zip(b, again))
    assert not (np.concatenate(b) == np.concatenate(classify_batches(130, 64, 0, 1))).all()
    assert not (np.concatenate(b) == np.concatenate(classify_batches(130, 64, 1, 0))).all()


def test_lm_streams_are_contiguous_and_targets_shift_by_one():
    ids = np.arange(1000, dtype=np.int32)
    s = lm_streams(ids, batch_size=4, seq_len=10, seed=0, epoch=3)
    assert s.shape[0] == 4 and (s.shape[1] - 1) % 10 == 0
    assert (np.diff(s, axis=1) == 1).all()  # each stream is a contiguous slice of the text
    n = (s.shape[1] - 1) // 10  # the chunks of 10 steps in the streams
    assert n >= 1
    for k in range(n):
        x, y = lm_chunk(s, k, 10)
        assert x.shape == y.shape == (4, 10)
        assert (y == x + 1).all()
    with pytest.raises(ValueError, match="too short"):
        lm_streams(ids[:30], batch_size=4, seq_len=10, seed=0, epoch=0)


def test_schedule_warmup_and_cosine():
    assert lr_at(0, 1.0, 100, warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 100, warmup_steps=10) == pytest.approx(1.0)
    assert lr_at(50, 1.0, 100) == 1.0
    assert lr_at(10, 1.0, 110, 10, "cosine") == pytest.approx(1.0)
    assert lr_at(110, 1.0, 110, 10, "cosine", min_lr_ratio=0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        lr_at(0, 1.0, 10, 0, "step")


def test_metrics():
    b = classification_bundle(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1]))
    assert b == {"correct": 3, "total": 4, "accuracy": 75.0}
    f = perplexity_figures(-100 * math.log(4), 100)
    assert f["perplexity"] == pytest.approx(4.0)
    assert f["bits_per_char"] == pytest.approx(2.0)
    assert f["avg_log_prob"] == pytest.approx(-math.log(4))


def test_lm_streams_fit_every_length():
    """B streams of (per_stream + 1) characters never need more text than there is."""
    for n in range(200, 1200, 7):
        for b in (1, 3, 4, 16):
            try:
                s = lm_streams(np.arange(n, dtype=np.int32), batch_size=b, seq_len=10, seed=0, epoch=n)
            except ValueError:
                continue
            assert s.shape[0] == b and (s.shape[1] - 1) % 10 == 0


def test_prefix_labels():
    from mlx_rnn.core.batching import prefix_labels
    from mlx_rnn.core.vocab import TEXT8, TEXT8_SYMBOLS

    x = np.stack([TEXT8.encode("the cat"), TEXT8.encode("aeiou b")])
    py = prefix_labels(x, TEXT8_SYMBOLS)
    assert py.dtype == np.float32 and py.shape == (2, 6)
    # "the cat": labels of h e ' ' c a t ; "aeiou b": e i o u ' ' b
    assert py.tolist() == [[0, 1, -1, 0, 1, 0], [1, 1, 1, 1, -1, 0]]
    # capitals and punctuation of a corpus alphabet: letters by case-folding, the rest ignored
    assert prefix_labels(np.array([[0, 1, 2, 3]]), "xE.b").tolist() == [[1, -1, 0]]


def test_split_validation_blocks():
    from mlx_rnn.core.taskdata import split_validation_blocks

    text = "".join(chr(97 + i % 26) for i in range(100_000))
    train, val = split_validation_blocks(text, 0.05)
    assert len(val) == 10 and all(len(b) == 500 for b in val)
    assert len(train) + sum(map(len, val)) == len(text)
    # each block is the tail of one tenth of the text, and the training text is the rest, in order
    for i, b in enumerate(val):
        assert b == text[(i + 1) * 10_000 - 500:(i + 1) * 10_000]
    assert train == "".join(text[i * 10_000:(i + 1) * 10_000 - 500] for i in range(10))
    # a short text: one block at the end (at least 100 characters a block)
    train, val = split_validation_blocks(text[:2500], 0.05)
    assert val == [text[2375:2500]] and train == text[:2375]
    train, val = split_validation_blocks(text[:10], 0.05)
    assert val == [text[8:10]] and train == text[:8]
