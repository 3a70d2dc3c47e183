"""Long-text scoring in bounded memory (framework-neutral; numpy only).

Both frameworks' ``RNNLanguageModel`` run a text through the network in chunks of
:data:`SCORE_CHUNK` symbols, carrying the LSTM/GRU state from chunk to chunk and
evaluating each chunk before the next (``mx.eval`` in MLX, ``torch.no_grad`` in PyTorch).
The figures equal a single pass over the whole text (the recurrence is the same; only
the graph is cut), while memory no longer grows with the text: MLX's lazy graph and
PyTorch's (1, T, H) outputs stay one chunk long, and only the per-chunk sums are kept.
This module holds what does not depend on the framework: the chunk bounds and the sums.
"""

from __future__ import annotations

import numpy as np

#: symbols per forward pass when a text is scored (the state is carried across chunks)
SCORE_CHUNK = 2048


def chunk_bounds(n: int, size: int = SCORE_CHUNK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of at most ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1 (got {size})")
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def target_sums(chunks, targets: np.ndarray, skip: int) -> tuple[float, float]:
    """Sum the scored positions of a chunked pass.

    Args:
        chunks: iterable of ``(log_probs, raw_logits)`` per chunk, each float (n, V), in text
            order; ``log_probs`` are the model's (calibrated) log probabilities, ``raw_logits``
            the logits before calibration (or None to skip the raw figure).
        targets: int (N,) the symbols scored; position ``skip + i`` of the pass predicts
            ``targets[i]`` (``skip`` = len(context) - 1).

    Returns:
        ``(log_prob, raw_log_prob)`` in nats (float64 sums); raw is nan when not computed.
    """
    total, raw_total, pos = 0.0, 0.0, 0
    for lp, raw in chunks:
        n = lp.shape[0]
        lo, hi = max(skip, pos), pos + n  # pass positions of this chunk that are scored
        if hi > lo:
            rows = np.arange(lo - pos, hi - pos)
            y = targets[lo - skip:hi - skip]
            total += float(lp[rows, y].astype(np.float64).sum())
            if raw is None:
                raw_total = float("nan")
            else:
                z = np.asarray(raw[rows], dtype=np.float64)
                zmax = z.max(axis=1, keepdims=True)
                lse = (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
                raw_total += float((z[np.arange(len(y)), y] - lse).sum())
        pos += n
    return total, raw_total


def score_sequence(vocab, chunk_log_probs, next_chars: str, context: str, raw: bool = False) -> tuple[float, float]:
    """``(log_prob, raw_log_prob)`` of ``next_chars`` after ``context`` in nats, for both LM wrappers.

    ``chunk_log_probs(ids, raw)`` is the wrapper's chunked forward pass (yields per-chunk log
    probabilities); an empty context means start of text (a single space). Raises DataError
    for characters outside ``vocab``."""
    from .vocab import check_text

    context = context or " "
    check_text(vocab, context, "context")
    check_text(vocab, next_chars, "next_chars")
    if not next_chars:
        return 0.0, 0.0
    ids = vocab.encode(context + next_chars[:-1])
    return target_sums(chunk_log_probs(ids, raw), vocab.encode(next_chars), len(context) - 1)
