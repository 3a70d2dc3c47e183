"""AdamW with ``mlx.optimizers.AdamW`` semantics, one fused native update per parameter.

``mlx.optimizers.AdamW`` builds about fifteen elementwise operations per parameter and
step; on the CPU back end each is a separate pass over the parameter (and the square
root is slow there). :class:`AdamW` keeps the same formulas, state (``m``, ``v``, ``step``,
``learning_rate``) and checkpoint format, and runs the update of a float32 parameter on
the CPU as one primitive of :mod:`mlx_rnn.native` (one pass). Everything else (GPU,
other dtypes, no extension, ``MLX_RNN_ADAMW=mlx``) goes through the parent class.
:func:`clip_grad_norm` likewise computes the global gradient norm in one native pass.

Formulas (Loshchilov & Hutter 2019, as mlx.optimizers writes them)::

    p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - c1 m / (sqrt(v) c2 + eps),  c1 = lr / (1 - b1^t),  c2 = 1 / sqrt(1 - b2^t)
"""

from __future__ import annotations

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from . import native
from .core import switches

ENV_VAR = switches.ADAMW  # "auto" (default): fused update and native norm where native can run; "mlx": mlx only


def fused_enabled(dtype=mx.float32) -> bool:
    """Whether a parameter of ``dtype`` gets the fused native update now (``MLX_RNN_ADAMW`` not
    ``mlx`` and native can run).

    Raises:
        ValueError: a bad ``MLX_RNN_ADAMW`` (or another switch: :func:`mlx_rnn.core.switches.read`).
    """
    return switches.read().adamw == "auto" and native.can_run(dtype)


class AdamW(optim.AdamW):
    """``mlx.optimizers.AdamW`` (same arguments and state) with a fused CPU update.

    Args (besides the parent's):
        max_grad_norm: clip the gradients to this global L2 norm before the update, as
            ``mlx.optimizers.clip_grad_norm(grads, max_grad_norm)`` does; 0 (default): no
            clipping. On the fused path the norm is one native pass and the clipping factor
            is applied inside the update.

    Raises:
        ValueError: ``max_grad_norm < 0``.
    """

    def __init__(self, *args, max_grad_norm: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if max_grad_norm < 0:
            raise ValueError(f"max_grad_norm should be >= 0, got {max_grad_norm}")
        self.max_grad_norm = float(max_grad_norm)
        self._grad_scale = None  # this update's clipping factor on the fused path; None: mlx's path
        self._scalars = None  # this update's (lr, c1, c2), computed once for every parameter

    def apply_gradients(self, gradients: dict, parameters: dict):
        leaves = [g for _, g in tree_flatten(gradients)]
        self._grad_scale = self._scalars = None
        if not (fused_enabled() and leaves and all(g.dtype == mx.float32 for g in leaves)):
            if self.max_grad_norm > 0:
                gradients, _ = optim.clip_grad_norm(gradients, self.max_grad_norm)
            return super().apply_gradients(gradients, parameters)
        scale = mx.array(1.0, dtype=mx.float32)
        if self.max_grad_norm > 0:  # mlx's clip_grad_norm: g * min(max_norm / (norm + 1e-6), 1)
            norm = mx.sqrt(native.ext().sum_squares(leaves))
            scale = mx.minimum(self.max_grad_norm / (norm + 1e-6), 1.0)
        self._grad_scale = scale
        return super().apply_gradients(gradients, parameters)  # moves the step, then apply_single

    def _update_scalars(self):
        """(lr, c1, c2) float32 for this update; computed on the first parameter, after the
        parent has moved the step count."""
        if self._scalars is not None:
            return self._scalars
        lr = self.learning_rate.astype(mx.float32)
        b1, b2 = self.betas
        if self.bias_correction:
            c1 = (lr / (1 - b1**self.step)).astype(mx.float32)
            c2 = mx.rsqrt(1 - b2**self.step).astype(mx.float32)
        else:
            c1 = c2 = mx.array(1.0, dtype=mx.float32)
        self._scalars = (lr, c1, c2)
        return self._scalars

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        scale = self._grad_scale
        if scale is None:
            return super().apply_single(gradient, parameter, state)
        lr, c1, c2 = self._update_scalars()
        if parameter.dtype != mx.float32:
            return super().apply_single((gradient * scale).astype(gradient.dtype), parameter, state)
        p, m, v = native.ext().adamw_update(gradient, parameter, state["m"], state["v"], lr, c1, c2, scale,
                                            self.betas[0], self.betas[1], self.eps, self.weight_decay,
                                            self.bias_correction)
        state["m"] = m
        state["v"] = v
        return p
