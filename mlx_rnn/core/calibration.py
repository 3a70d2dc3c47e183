"""Temperature scaling of the LM's logits, fitted on the validation slice (framework-neutral).

A model trained with dropout is often over-confident on text it has not seen: dividing its
logits by one scalar T > 1, chosen to minimise the validation loss, lowers the loss on
held-out text without changing the ranking of the symbols. The method is temperature scaling
(Guo et al. 2017, "On Calibration of Modern Neural Networks", section 4.2). The fitted T is
stored in the checkpoint's ``config.json`` as ``calibration_temperature`` and applied by both
frameworks' ``RNNLanguageModel``.
"""

from __future__ import annotations

import numpy as np

#: the range searched for T; a fit at either end is clipped there
T_RANGE = (0.25, 4.0)


def _probs(z: np.ndarray, beta: float) -> np.ndarray:
    s = beta * z
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    return p / p.sum(axis=1, keepdims=True)


def mean_nll(logits: np.ndarray, targets: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats per symbol) of ``softmax(logits / temperature)``.

    Args:
        logits: float (N, V) raw logits; targets: int (N,) symbol indices.
    """
    z = np.asarray(logits, dtype=np.float64) / temperature
    zmax = z.max(axis=1, keepdims=True)
    lse = (zmax + np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)))[:, 0]
    return float(np.mean(lse - z[np.arange(len(targets)), targets]))


def fit_temperature(logits: np.ndarray, targets: np.ndarray, iters: int = 60) -> float:
    """The temperature T in :data:`T_RANGE` that minimises :func:`mean_nll`.

    The loss is convex in beta = 1 / T, with derivative E_p[z] - z_target (p = softmax(beta z)),
    so bisection on the sign of the derivative finds the minimum (to ~1e-12 relative after 60
    halvings).

    Args:
        logits: float (N, V) raw logits; targets: int (N,) symbol indices, N >= 1.

    Raises:
        ValueError: empty input, mismatched shapes or non-finite logits.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    if z.ndim != 2 or y.shape != (z.shape[0],) or z.shape[0] == 0:
        raise ValueError(f"need logits (N, V) and targets (N,) with N >= 1 (got {z.shape} and {y.shape})")
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite to fit a temperature")
    zy = z[np.arange(len(y)), y]

    def slope(beta: float) -> float:
        return float(((_probs(z, beta) * z).sum(axis=1) - zy).mean())

    lo, hi = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    if slope(lo) >= 0:
        return T_RANGE[1]
    if slope(hi) <= 0:
        return T_RANGE[0]
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 1.0 / (0.5 * (lo + hi))
