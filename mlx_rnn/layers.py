"""Two ``mlx.nn`` layers with the same semantics and a faster CPU path (Dropout, Embedding), and
the input projection of the recurrences with a row-contiguous weight gradient.

Dropout: ``mlx.nn.Dropout`` draws its mask with ``mx.random.bernoulli``, which on the CPU back end
costs about 9 ns per element (measured: 3.5 ms for the LM's (32, 25, 512) activations, three
of them per step). :class:`Dropout` draws the mask with one native primitive instead
(:mod:`mlx_rnn.native`, ``dropout_mask``: a counter-based hash of a seed and the element
index, about 0.2 ns per element), seeded by two words drawn from MLX's random state, so
``mx.random.seed`` and the RNG key saved in checkpoints reproduce the masks exactly.

Output as mlx: ``(mask * x) * (1 / (1 - p))`` with ``mask`` 1 with probability ``1 - p``.
Everything else (GPU, dtypes other than float32, no extension, ``MLX_RNN_LAYERS=mlx``)
takes the parent's path.

Embedding: the lookup as a one-hot matrix product on the CPU for small vocabularies. The
forward is the same bits as the gather (each row is 1 * w + 0 * others); the backward is a
matrix product instead of MLX's scatter-add (measured for the LM's (32, 25) ids, 27 x 512
table: 0.4 ms instead of 2.0 ms). ``MLX_RNN_LAYERS=mlx`` keeps the gather.

log_softmax: ``mlx.nn.log_softmax`` is an ``mx.compile``d function; on the CPU its first use per
shape builds a C++ kernel with the system compiler (measured: 1.4 s for each of the first two
scoring calls of a loaded LM, files under ``$TMPDIR/mlx``, and an error where ``$TMPDIR`` is not
writable). :func:`log_softmax` is the same formula as plain operations: the same numbers, nothing
built.

Projection: ``x @ w.T`` differentiated by MLX gives the weight gradient as the transpose of
``x.T @ dy``, a strided view; every native consumer (the clipping norm, the fused AdamW) then
copies it on one thread (measured: 3.5 ms for the LM's 2048 x 512 ``weight_ih``, four such
copies per step). :func:`projection` computes ``dy.T @ x`` instead, the same numbers laid out
like the weight.
"""

from __future__ import annotations

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.nn as nn

from . import native
from .core import switches

ENV_VAR = switches.LAYERS  # "auto" (default): the CPU paths below where they apply; "mlx": mlx.nn's


def _choice() -> str:
    """``MLX_RNN_LAYERS`` now: "auto" or "mlx" (ValueError for a bad switch: core/switches.py)."""
    return switches.read().layers


def native_masks(dtype=mx.float32) -> bool:
    """Whether dropout on an array of ``dtype`` draws its mask natively now (extension built,
    CPU default device, float32, ``MLX_RNN_LAYERS`` not ``mlx``).

    Raises:
        ValueError: an unknown ``MLX_RNN_LAYERS``.
    """
    return _choice() == "auto" and native.can_run(dtype)


def one_hot_embedding(dtype=mx.float32) -> bool:
    """Whether an embedding lookup of ``dtype`` weights is a one-hot product now (CPU default
    device, float32, ``MLX_RNN_LAYERS`` not ``mlx``; no extension needed).

    Raises:
        ValueError: an unknown ``MLX_RNN_LAYERS``.
    """
    return _choice() == "auto" and dtype == mx.float32 and mx.default_device() == mx.cpu


class Dropout(nn.Dropout):
    """``mlx.nn.Dropout(p)``: zero each element with probability p in training mode and scale
    the rest by 1 / (1 - p); the identity in eval mode or for p = 0."""

    def __call__(self, x: mx.array) -> mx.array:
        if self._p_1 == 1 or not self.training:
            return x
        if not native_masks(x.dtype):
            return super().__call__(x)
        # two 24-bit words (mx.random.randint draws through float32) from MLX's RNG state, which
        # this advances like any mx.random call: 48 bits per mask
        seed = mx.random.randint(0, 1 << 24, (2,), dtype=mx.int32)
        mask = native.ext().dropout_mask(seed, list(x.shape), self._p_1)
        return (mask * x) * (1 / self._p_1)


class Embedding(nn.Embedding):
    """``mlx.nn.Embedding(num_embeddings, dims)``: ids (any shape, integer) -> weight[ids]
    (..., dims). On the CPU with float32 weights and at most ``ONE_HOT_MAX`` rows, computed
    as ``one_hot(ids) @ weight`` (equal forward, a faster gradient)."""

    ONE_HOT_MAX = 256

    def __call__(self, x: mx.array) -> mx.array:
        w = self.weight
        if w.shape[0] > self.ONE_HOT_MAX or not one_hot_embedding(w.dtype):
            return w[x]
        one_hot = (x[..., None] == mx.arange(w.shape[0], dtype=x.dtype)).astype(w.dtype)
        return one_hot @ w


@mx.custom_function
def projection(x: mx.array, w: mx.array) -> mx.array:
    """``x @ w.T`` for x (N, in) and w (out, in) -> (N, out), whose VJP returns the gradient of
    ``w`` row-contiguous (``dy.T @ x``; see the module docstring). Any device and dtype."""
    return x @ w.T


@projection.vjp
def _projection_vjp(primals, cotangent, output):
    x, w = primals
    return cotangent @ w, cotangent.T @ x


def log_softmax(z: mx.array, axis: int = -1) -> mx.array:
    """``z - logsumexp(z)`` along ``axis`` (as ``mlx.nn.log_softmax``, without its ``mx.compile``:
    see the module doc). z: float array of any shape; returns log-probabilities of the same shape
    and dtype."""
    return z - mx.logsumexp(z, axis=axis, keepdims=True)
