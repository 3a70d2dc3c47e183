"""The native MLX primitives (C++ extension ``mlx_rnn.native._ext``) and whether they can run.

The extension holds the LSTM and GRU recurrences over a whole sequence (forward and
backward as two primitives each, for the CPU stream, float32), the fused AdamW update, the
squared gradient norm for clipping and dropout masks. The elementwise kernels (AdamW, norm,
masks) run on one thread unless ``MLX_RNN_NUM_THREADS`` asks for more (on the 2-core test
machine a second thread did not pay: the arrays are small and memory-bound).
``setup.py`` builds it at install time; an install without a compiler still works: then
:func:`available` is False, :func:`unavailable_reason` says why in one line, and the
models use the Python-level op (``mlx_rnn/lstm_op.py``), which also serves the GPU.

The extension is linked against the MLX it was built with; it is used only when that is
the MLX imported now (a different MLX would have another C++ ABI).
"""

from __future__ import annotations

import importlib
import os

from .. import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx

__all__ = ["available", "unavailable_reason", "ext", "can_run"]

THREADS_ENV = "MLX_RNN_NUM_THREADS"

_STATE: dict = {}


def _load():
    if "ext" in _STATE:
        return _STATE["ext"], _STATE["reason"]
    ext, reason = None, ""
    try:
        mod = importlib.import_module("mlx_rnn.native._ext")
    except ImportError as e:
        reason = f"the extension is not built ({e.__class__.__name__}: {e}); reinstall with a C++ compiler " \
                 f"and cmake, see README 'Set-up'"
    else:
        built = getattr(mod, "built_with_mlx", "?")
        if built != mx.__version__:
            reason = f"the extension was built with MLX {built} but MLX {mx.__version__} is installed; reinstall mlx-rnn"
        else:
            ext = mod
            ext.set_num_threads(_default_threads())
    _STATE["ext"], _STATE["reason"] = ext, reason
    return ext, reason


def _default_threads() -> int:
    """$MLX_RNN_NUM_THREADS, else 1.

    Raises:
        ValueError: $MLX_RNN_NUM_THREADS is not a positive integer.
    """
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{THREADS_ENV}={raw!r}: expected a positive integer")
        return int(raw)
    return 1



def available() -> bool:
    """True when the extension is built for the installed MLX."""
    return _load()[0] is not None


def unavailable_reason() -> str:
    """One line saying why the extension cannot be used ("" when it can)."""
    return _load()[1]


def ext():
    """The extension module (raises RuntimeError with the reason when unavailable)."""
    mod, reason = _load()
    if mod is None:
        raise RuntimeError(f"mlx_rnn native primitives unavailable: {reason}")
    return mod


def can_run(dtype) -> bool:
    """Whether the native kernels serve this call: extension available, default device the
    CPU, and float32 data (other cases use the Python-level op)."""
    return available() and dtype == mx.float32 and mx.default_device() == mx.cpu
