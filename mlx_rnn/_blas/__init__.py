"""Make MLX's CPU back end use an optimised BLAS on Linux, and say which it uses.

Why: the PyPI ``mlx[cpu]`` Linux wheel links ``libmlx.so`` against a reference
BLAS shipped in ``mlx_cpu.libs/libblas-*.so`` (about 5-7 GFLOP/s for fp32
matmul on a 2-core EPYC, 20-30x below OpenBLAS). ``libmlx.so`` imports the
standard CBLAS symbols (``cblas_sgemm`` ...) undecorated, is not linked with
``-Bsymbolic`` and is loaded ``RTLD_LOCAL`` by Python. The dynamic linker
resolves its symbols by searching the *global* scope first (the executable,
its dependencies, then every object opened with ``RTLD_GLOBAL`` in load
order) and only then the library's own dependency tree. So an optimised BLAS
opened with ``RTLD_GLOBAL`` *before* ``mlx.core`` is imported interposes on the
reference one -- no rebuild, no ``LD_PRELOAD``.

Importing this module does that, once per process (``preload()``). It imports
neither mlx nor torch at module level, so it is safe to import anywhere: on
macOS (MLX uses Accelerate there; nothing is done), on Windows, and in
processes where mlx is not installed.

Search order for the library to preload:

1. ``$MLX_RNN_BLAS``: a path (or soname) of a shared library exporting
   ``cblas_sgemm``; or ``reference`` (also ``none``/``off``/``0``) to opt out
   and keep the wheel's reference BLAS. A value that is neither (a missing
   file, ``/etc/passwd``, a library without ``cblas_sgemm``) is refused: the
   import raises ValueError naming the variable and the value, which every
   script turns into one line and exit 2 (no silent fall-back to the slow BLAS).
2. ``libopenblas.so.0`` (Debian/Ubuntu ``libopenblas0-pthread`` /
   ``libopenblas0-openmp``; found through the loader cache), then the same name
   in the usual Debian/Red Hat/conda directories, then ``libopenblas.so``,
   ``libopenblasp.so.0``, ``libblis.so.4``.

A candidate is first opened ``RTLD_LOCAL`` and checked for ``cblas_sgemm``;
only then is it promoted to ``RTLD_GLOBAL``.

``blas_info()`` reports what MLX *actually* uses, detected rather than
assumed: it reads ``libmlx.so``'s GOT slot for ``cblas_sgemm`` (relocation
offset from the ELF file + load base from the link map), and asks ``dladdr``
which loaded object that address belongs to. If the slot is not yet bound
(lazy binding, no matmul run yet) it first runs a 2x2 float32 matmul on the
CPU stream to bind it; failing that it emulates the loader's lookup
(global scope, then libmlx's own dependencies).

Note on side effects: OpenBLAS opened globally also exports the Fortran BLAS
(``sgemm_`` ...) and so interposes those symbols for objects loaded later with
default visibility (e.g. the wheel's reference LAPACK). numpy (its own
``scipy_openblas64_`` with suffixed names) and torch (MKL, statically linked)
keep working; ``tests/test_blas.py`` checks both in the same process.
"""

from .preload import ENV_VAR, get_num_threads, preload, set_num_threads  # importing .preload preloads
from .detect import blas_info, describe
from .probe import measure_sgemm_gflops_mlx

__all__ = [
    "preload",
    "blas_info",
    "describe",
    "measure_sgemm_gflops_mlx",
    "set_num_threads",
    "get_num_threads",
    "ENV_VAR",
]
