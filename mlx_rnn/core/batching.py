"""Batching plans: which examples or text positions each training step sees.

Framework-neutral (numpy only), so MLX and PyTorch trained with the same seed
see exactly the same batches in the same order.
"""

from __future__ import annotations

import numpy as np

from .vocab import VOWELS


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The data-order generator of one epoch: a pure function of (seed, epoch)."""
    return np.random.default_rng([int(seed), int(epoch), 0x5EED])


def classify_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled mini-batches of example indices for one epoch.

    Returns:
        list of int64 arrays; all of length ``batch_size`` except possibly the last.
    """
    order = epoch_rng(seed, epoch).permutation(num_examples)
    return [order[i:i + batch_size] for i in range(0, num_examples, batch_size)]


def prefix_labels(x: np.ndarray, symbols: str) -> np.ndarray:
    """Vowel labels of the characters inside classification windows, for the prefix loss.

    Every prefix ``x[:, :t+1]`` of a window is followed by the known character ``x[:, t+1]``,
    so each window also labels its T-1 prefixes (the same labels the exercise gives the
    whole window: vowel a/e/i/o/u = 1, other letter = 0). Uses nothing but the window itself.

    Args:
        x: int array (N, T) of symbol indices into ``symbols``.
        symbols: the vocabulary's symbols in index order.

    Returns:
        float32 array (N, T-1): 1.0 vowel, 0.0 consonant, -1.0 for a non-letter (space,
        punctuation), which the loss ignores.
    """
    table = np.array([1.0 if ch.lower() in VOWELS else 0.0 if ch.isalpha() else -1.0 for ch in symbols],
                     dtype=np.float32)
    return table[np.asarray(x)[:, 1:]]


def lm_streams(ids: np.ndarray, batch_size: int, seq_len: int, seed: int, epoch: int,
               random_offset: bool = True) -> np.ndarray:
    """Lay the encoded text out as ``batch_size`` contiguous streams for truncated BPTT.

    A random offset in [0, seq_len) is dropped from the start each epoch (so chunk
    boundaries move between epochs), then the text is cut into ``batch_size`` equal
    streams (as PyTorch's word_language_model ``batchify``).

    Returns:
        int32 array of shape (batch_size, L) with L - 1 a multiple of ``seq_len``.

    Raises:
        ValueError: if the text is too short for one chunk per stream.
    """
    offset = int(epoch_rng(seed, epoch).integers(0, seq_len)) if random_offset else 0
    usable = len(ids) - offset
    per_stream = (usable // batch_size - 1) // seq_len * seq_len  # B * (per_stream + 1) <= usable
    if per_stream < seq_len:
        raise ValueError(f"text of {len(ids)} characters is too short for batch size "
                         f"{batch_size} x sequence length {seq_len}")
    body = ids[offset: offset + batch_size * (per_stream + 1)]
    # Stream b covers [b*(per_stream+1) ...]; each keeps one extra char for the final target.
    return body.reshape(batch_size, per_stream + 1).astype(np.int32)


def lm_chunk(streams: np.ndarray, k: int, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of chunk ``k``: two int32 arrays of shape (B, seq_len)."""
    s = k * seq_len
    return streams[:, s:s + seq_len], streams[:, s + 1:s + seq_len + 1]
