"""Which implementation runs the LSTM/GRU recurrence, and the native one's Python face.

Three paths, chosen per call by ``MLX_RNN_LSTM_IMPL`` (read at call time through
:mod:`mlx_rnn.core.switches`; it applies to the LSTM and the GRU):

- ``native``: the C++ primitives of :mod:`mlx_rnn.native` (forward and backward over the
  whole sequence; on x86-64 on a thread team with the recurrent weight packed once, else one
  sgemm per step); CPU stream, float32 only.
- ``op``: the Python-level op with a hand-written VJP (:mod:`mlx_rnn.lstm_op`) for the LSTM,
  the plain per-step loop for the GRU; any device and dtype (the GPU path).
- ``reference``: the plain per-step loop differentiated by MLX (LSTM; the ground truth).
- ``auto`` (default): native where it can run (extension built, CPU, float32), else op.

``describe()`` is the one line that the training header and the benchmark print.
"""

from __future__ import annotations

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx

from . import native
from .core import switches
from .lstm_op import use_approx

IMPL_ENV = switches.LSTM_IMPL
CHOICES = switches.IMPL_CHOICES

__all__ = ["IMPL_ENV", "CHOICES", "requested", "path_for", "describe", "lstm_native", "gru_native"]


def requested() -> str:
    """The implementation asked for by ``MLX_RNN_LSTM_IMPL`` (default ``auto``).

    Raises:
        ValueError: an unknown value, or ``native`` where the extension is unavailable; also an
            unknown value of another switch (:func:`mlx_rnn.core.switches.read`).
    """
    impl = switches.read().lstm_impl  # (every switch checked here, so that junk fails before training)
    if impl == "native" and not native.available():
        raise ValueError(f"{IMPL_ENV}=native: {native.unavailable_reason()}")
    return impl


def path_for(dtype=mx.float32) -> str:
    """The path ("native", "op" or "reference") a recurrence of ``dtype`` takes now."""
    impl = requested()
    if impl == "auto":
        return "native" if native.can_run(dtype) else "op"
    return impl


def describe(dtype=mx.float32) -> str:
    """One line: the path float32 recurrences take now and, when not native, why."""
    impl = requested()
    path = path_for(dtype)
    if path == "native":
        return f"native (C++ LSTM/GRU primitives, CPU float32; {native.describe_kernels()})"
    if impl != "auto":
        return f"{path} ({IMPL_ENV}={impl})"
    if not native.available():
        return f"op (Python-level; native unavailable: {native.unavailable_reason()})"
    return "op (Python-level; the native primitives serve the CPU and float32 only)"


def lstm_native(xw: mx.array, h0: mx.array, c0: mx.array, w_hh: mx.array, exact: bool = False,
                save: bool = True, bias: mx.array | None = None, w_ih: mx.array | None = None):
    """The LSTM recurrence by the C++ primitive; same arguments and result as
    :func:`mlx_rnn.lstm_op.lstm_recurrence`: xw (B, T, 4H), h0, c0 (B, H), w_hh (4H, H), all
    float32 on the CPU -> ``(hs (B, T, H), h_T (B, H), c_T (B, H))``.

    ``exact``: std::tanh/exp instead of the rational approximation (evaluation). ``save``:
    keep the gate activations for the backward pass (training); without, a gradient re-runs
    the forward first. ``bias`` (4H,), optional: added to ``xw`` inside the primitive (the
    caller then needs no broadcast add of its own; gradient: dxw summed over B and T).
    ``w_ih`` (4H, E), optional: then ``xw`` is the layer's input x (B, T, E) and the primitive
    computes the input projection x W_ih^T itself, one panel product per step on the thread
    team (no (B, T, 4H) array written and read back; gradients dx = dxw W_ih, dW_ih = dxw^T x).
    Raises ValueError for bad shapes, dtypes or a non-CPU device.
    """
    approx = use_approx(xw.dtype) and not exact
    hs, h_T, c_T, _, _ = native.ext().lstm_forward(xw, w_hh, h0, c0, approx, save, bias=bias, w_ih=w_ih)
    return hs, h_T, c_T


def gru_native(xw: mx.array, w_hh: mx.array, b_hh: mx.array, h0: mx.array, exact: bool = False,
               save: bool = True):
    """The GRU recurrence by the C++ primitive: xw (B, T, 3H) = x W_ih^T + b_ih, w_hh (3H, H),
    b_hh (3H,), h0 (B, H) float32 on the CPU -> ``(hs (B, T, H), h_T (B, H))``.

    ``exact`` and ``save`` as in :func:`lstm_native`. Raises ValueError for bad shapes,
    dtypes or a non-CPU device.
    """
    approx = use_approx(xw.dtype) and not exact
    hs, h_T, _ = native.ext().gru_forward(xw, w_hh, b_hh, h0, approx, save)
    return hs, h_T
