"""AdamW with ``mlx.optimizers.AdamW`` semantics, one fused native update per parameter.

``mlx.optimizers.AdamW`` builds about fifteen elementwise operations per parameter and
step; on the CPU back end each is a separate pass over the parameter (and the square
root is slow there). :class:`AdamW` keeps the same formulas, state (``m``, ``v``, ``step``,
``learning_rate``) and checkpoint format, and runs the update of a float32 parameter on
the CPU as one primitive of :mod:`mlx_rnn.native` (one pass). Everything else (GPU,
other dtypes, no extension, ``MLX_RNN_ADAMW=mlx``) goes through the parent class.

Formulas (Loshchilov & Hutter 2019, as mlx.optimizers writes them)::

    p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - c1 m / (sqrt(v) c2 + eps),  c1 = lr / (1 - b1^t),  c2 = 1 / sqrt(1 - b2^t)
"""

from __future__ import annotations

import os

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.optimizers as optim

from . import native

ENV_VAR = "MLX_RNN_ADAMW"  # "auto" (default): fused where native can run; "mlx": mlx.optimizers only


def fused_enabled(dtype=mx.float32) -> bool:
    """Whether a parameter of ``dtype`` gets the fused native update now."""
    choice = os.environ.get(ENV_VAR, "auto").strip().lower()
    if choice not in ("auto", "mlx"):
        raise ValueError(f"{ENV_VAR}={choice!r}: expected auto or mlx")
    return choice == "auto" and native.can_run(dtype)


class AdamW(optim.AdamW):
    """``mlx.optimizers.AdamW`` (same arguments and state) with a fused CPU update."""

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        if not fused_enabled(parameter.dtype) or gradient.dtype != mx.float32:
            return super().apply_single(gradient, parameter, state)
        lr = self.learning_rate.astype(mx.float32)
        b1, b2 = self.betas
        step = self.step
        if self.bias_correction:
            c1 = (lr / (1 - b1**step)).astype(mx.float32)
            c2 = mx.rsqrt(1 - b2**step).astype(mx.float32)
        else:
            c1 = c2 = mx.array(1.0, dtype=mx.float32)
        p, m, v = native.ext().adamw_update(gradient, parameter, state["m"], state["v"], lr, c1, c2,
                                            b1, b2, self.eps, self.weight_decay, self.bias_correction)
        state["m"] = m
        state["v"] = v
        return p
