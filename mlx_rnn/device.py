"""Import this before ``mlx.core``: the import side effects of the MLX side, in one place.

1. Precision: MLX computes float32 matrix products as TF32 by default on CUDA GPUs and on Apple
   GPUs with neural accelerators; mlx-rnn sets ``MLX_ENABLE_TF32=0`` (full float32) unless the
   user set it, before MLX's first operation (:mod:`mlx_rnn.core.precision`; ``--tf32`` opts in).
2. BLAS: on Linux the PyPI MLX wheel links a reference BLAS about 30x slower than OpenBLAS;
   importing :mod:`mlx_rnn._blas` preloads a system OpenBLAS with ``RTLD_GLOBAL`` so that
   ``libmlx.so`` binds to it (see :mod:`mlx_rnn._blas`).

3. A clear error where MLX is installed without a back end (on Linux the ``mlx`` package alone
   has no ``libmlx.so``: it comes from ``mlx[cpu]``, ``mlx[cuda13]`` or ``mlx[cuda12]``, which
   mlx-rnn's extras ``cpu``, ``cuda13`` and ``cuda12`` pull; ``make setup`` picks one).

Every MLX module of this package imports this module first, so no other module needs to know
about the order.
"""

from mlx_rnn.core import precision as _precision

_precision.apply_mlx_default()

from . import _blas  # noqa: E402,F401  (runs _blas.preload() once per process)

try:
    import mlx.core  # noqa: E402,F401  (after the preload)
except ImportError as _e:
    if "libmlx" not in str(_e):
        raise
    raise ImportError(f"MLX is installed without a back end ({_e}): install mlx-rnn with one of its extras cpu, "
                      "cuda13 or cuda12 (make setup picks one; by hand: pip install -e '.[cpu]')") from None
