"""Batching plans: which examples or text positions each training step sees, and each rank's
share of them in a data-parallel run (docs/distributed.md), and the steps of an epoch.

Framework-neutral (numpy only), so MLX and PyTorch trained with the same seed
see exactly the same batches in the same order. Every plan is a pure function of
(seed, epoch); a run of one process is the world-size-1 case of the sharded plans.
"""

from __future__ import annotations

import numpy as np

from .config import RunConfig
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


# ----- the plans of a data-parallel run: each rank's share (world 1: the plans above) -----------
def classify_plan(num_examples: int, batch_size: int, seed: int, epoch: int,
                  rank: int = 0, world: int = 1) -> list[tuple[np.ndarray, float]]:
    """This rank's share of one epoch's classification batches, with gradient weights.

    The global plan is :func:`~mlx_rnn.core.batching.classify_batches` with batch
    ``batch_size * world``; rank ``r`` takes ``[r*B:(r+1)*B]`` of each full global batch
    and ``np.array_split(batch, world)[r]`` of a final partial one (dropped when it has
    fewer than ``world`` examples). The weight ``n_r / n_global`` makes the weighted sum of
    the ranks' mean-loss gradients the global batch's mean-loss gradient.

    Returns:
        list of ``(indices, weight)``; for ``world == 1`` the plain plan with weight 1.0.
    """
    batches = classify_batches(num_examples, batch_size * world, seed, epoch)
    if world == 1:
        return [(b, 1.0) for b in batches]
    out = []
    for b in batches:
        if len(b) == batch_size * world:
            part = b[rank * batch_size:(rank + 1) * batch_size]
        elif len(b) >= world:
            part = np.array_split(b, world)[rank]
        else:
            continue
        out.append((part, len(part) / len(b)))
    return out


def classify_steps(num_examples: int, batch_size: int, world: int = 1) -> int:
    """``len(classify_plan(...))`` without building it."""
    g = batch_size * world
    full, rem = divmod(num_examples, g)
    return full + (1 if rem and (world == 1 or rem >= world) else 0)


def lm_layout(num_chars: int, batch_size: int, seq_len: int, seed: int, epoch: int,
              random_offset: bool = True) -> tuple[int, int]:
    """``(offset, per_stream)`` of :func:`~mlx_rnn.core.batching.lm_streams` for a text of ``num_chars``.

    Raises:
        ValueError: the text is too short for one chunk per stream (as ``lm_streams``).
    """
    offset = int(epoch_rng(seed, epoch).integers(0, seq_len)) if random_offset else 0
    per_stream = ((num_chars - offset) // batch_size - 1) // seq_len * seq_len  # as lm_streams
    if per_stream < seq_len:
        raise ValueError(f"text of {num_chars} characters is too short for batch size "
                         f"{batch_size} x sequence length {seq_len}")
    return offset, per_stream


def lm_steps(num_chars: int, batch_size: int, seq_len: int, world: int = 1) -> int:
    """LM training steps per epoch with global batch ``batch_size * world`` (offsets may cost one chunk)."""
    _, per_stream = lm_layout(num_chars, batch_size * world, seq_len, 0, 0, random_offset=False)
    return per_stream // seq_len - 1


def steps_per_epoch(cfg: RunConfig, train, world: int = 1) -> int:
    """Training steps per epoch of ``cfg``'s task over ``world`` ranks (``train`` as the Trainer
    takes it: ``(x, y)`` for the classifier, the ids or a lazily read text for the LM)."""
    if cfg.task == "classify":
        return classify_steps(len(train[1]), cfg.batch_size, world)
    return lm_steps(len(train), cfg.batch_size, cfg.seq_len, world)


class LazyStreams:
    """Rows of the LM stream layout read on demand from a text that is not in memory.

    ``source`` has ``len()`` and ``read(start, stop) -> int32 ids`` (e.g. a split of
    :class:`mlx_rnn.core.corpus.Text8Corpus`, a memory map). Indexing as ``lm_chunk`` does,
    ``streams[:, s:e]``, reads ``rows x (e - s)`` ids; ``shape`` is that of the
    in-memory layout. ``np.asarray(streams)`` reads all of it (tests).
    """

    def __init__(self, source, offset: int, per_stream: int, row0: int, rows: int):
        self.source, self.offset, self.per_stream, self.row0, self.rows = source, offset, per_stream, row0, rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.per_stream + 1)

    def __getitem__(self, key):
        rows, cols = key
        if rows != slice(None) or not isinstance(cols, slice) or cols.step not in (None, 1):
            raise IndexError("LazyStreams supports streams[:, start:stop] only")
        start, stop, _ = cols.indices(self.per_stream + 1)
        stop = max(stop, start)
        base = self.offset + (self.row0 + np.arange(self.rows)) * (self.per_stream + 1)
        return np.stack([self.source.read(int(b) + start, int(b) + stop) for b in base]).astype(np.int32)

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def lm_shard_streams(ids, batch_size: int, seq_len: int, seed: int, epoch: int,
                     rank: int = 0, world: int = 1, random_offset: bool = True):
    """This rank's rows ``[r*B:(r+1)*B]`` of the epoch's global LM streams (``batch_size * world`` rows).

    ``ids`` is an int array (then the result is :func:`~mlx_rnn.core.batching.lm_streams`'s
    array; for one process exactly its output) or a lazily read text with ``read()``
    (then a :class:`LazyStreams`: nothing is loaded beyond the chunk being trained).
    """
    if not hasattr(ids, "read"):
        if world == 1:
            return lm_streams(ids, batch_size, seq_len, seed, epoch, random_offset=random_offset)
        streams = lm_streams(ids, batch_size * world, seq_len, seed, epoch, random_offset=random_offset)
        return streams[rank * batch_size:(rank + 1) * batch_size]
    offset, per_stream = lm_layout(len(ids), batch_size * world, seq_len, seed, epoch, random_offset)
    return LazyStreams(ids, offset, per_stream, rank * batch_size, batch_size)
