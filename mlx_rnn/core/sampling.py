"""Choosing the next symbol from log probabilities (framework-neutral, numpy).

Both frameworks' ``RNNLanguageModel.sample`` call :func:`choose`, so the same
weights, prime and seed give the same text in MLX and in PyTorch (up to float
rounding at a near-tie).
"""

from __future__ import annotations

import math

import numpy as np


def choose(log_probs: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """Pick a symbol index from log probabilities of shape (V,).

    ``temperature`` 0 is greedy (argmax); otherwise the distribution is
    ``softmax(log_probs / temperature)`` restricted to the ``top_k`` most likely
    symbols (all when None or 0).

    Raises:
        ValueError: negative temperature or top_k.
    """
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0 (got {temperature})")
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0 (got {top_k})")
    lp = np.asarray(log_probs, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(lp))
    z = lp / temperature
    if top_k:
        cut = np.sort(z)[-min(top_k, z.size)]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(p.size, p=p))
