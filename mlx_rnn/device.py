"""Import this before ``mlx.core``: the one import side effect of the MLX side.

On Linux the PyPI MLX wheel links a reference BLAS about 30x slower than OpenBLAS;
importing :mod:`mlx_rnn._blas` preloads a system OpenBLAS with ``RTLD_GLOBAL`` so that
``libmlx.so`` binds to it (see :mod:`mlx_rnn._blas`). Every MLX module of this package
imports this module first, so no other module needs to know about the order.
"""

from . import _blas  # noqa: F401  (runs _blas.preload() once per process)
