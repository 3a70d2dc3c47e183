"""The native MLX primitives (C++ extension ``mlx_rnn.native._ext``) and whether they can run.

The extension holds the LSTM and GRU recurrences over a whole sequence (forward and
backward as two primitives each, for the CPU stream, float32), the fused AdamW update, the
squared gradient norm for clipping and dropout masks. On x86-64 (AVX2 and FMA) the LSTM and
GRU recurrences run on a team of threads over the recurrent weight, packed once per sequence
(``panel_gemm`` in ``src/packed.h``, the team in ``src/team.h``; ``MLX_RNN_PACKED=0`` turns it
off, then one BLAS call per step). The team and the elementwise kernels (AdamW, norm, masks)
use ``MLX_RNN_NUM_THREADS`` threads; default: ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS``
when set, else the CPUs this process may run on (at most 8); a count above the usable CPUs is
capped to them with a one-line warning.
Where these recurrences serve a CPU run, the trainer's ``mx.compile`` runs without fused
elementwise kernels (:func:`configure_fusion`; ``MLX_RNN_CPU_FUSION``): on the CPU MLX builds
each fused kernel as C++ with the system compiler at first use, seconds of a fresh machine's
first epoch, and with the recurrence, AdamW and clipping native there is little left to fuse.
``setup.py`` builds it at install time; an install without a compiler still works: then
:func:`available` is False, :func:`unavailable_reason` says why in one line, and the
models use the Python-level op (``mlx_rnn/lstm_op.py``), which also serves the GPU.

The extension is linked against the MLX it was built with; it is used only when that is
the MLX imported now (a different MLX would have another C++ ABI).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

from .. import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
from ..core import switches
from ..core.cpus import usable_cpus
import mlx.core as mx

__all__ = ["available", "unavailable_reason", "ext", "can_run", "describe_kernels", "fusion_wanted",
           "configure_fusion", "describe_fusion", "fma_peak_gflops"]

THREADS_ENV = switches.NUM_THREADS
PACKED_ENV = switches.PACKED
FUSION_ENV = switches.CPU_FUSION
MAX_DEFAULT_THREADS = 8

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
            ext.set_packed_gemm(switches.read().packed)  # $MLX_RNN_PACKED
    _STATE["ext"], _STATE["reason"] = ext, reason
    return ext, reason


def _default_threads(cpus: int | None = None, warn=None) -> int:
    """$MLX_RNN_NUM_THREADS; else $OPENBLAS_NUM_THREADS or $OMP_NUM_THREADS (the BLAS's own
    limit, so that one setting bounds both, as ``benchmark.py --threads`` and the distributed
    ranks use it); else the CPUs this process may use (at most 8). A count above ``cpus`` (default:
    the usable CPUs) is capped to it with a one-line warning through ``warn`` (default: stderr):
    the team's threads spin at their barrier, so more threads than cores only wait for each other.

    Raises:
        ValueError: $MLX_RNN_NUM_THREADS is not a positive integer (or another switch is bad:
            :func:`mlx_rnn.core.switches.read`).
    """
    cpus = usable_cpus() if cpus is None else cpus
    count, source = switches.read().num_threads, THREADS_ENV
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # the first valid one, when ours is unset
        if count is None:
            count, source = _positive_int(os.environ.get(var, "").strip()), var
    if count is None:
        return max(1, min(cpus, MAX_DEFAULT_THREADS))
    if count > cpus:
        (warn or _warn)(f"warning: {source}={count} is more than the {cpus} CPU{'s' if cpus != 1 else ''} this "
                        f"process may use: the native kernels use {cpus} thread{'s' if cpus != 1 else ''}")
        return cpus
    return count


def _positive_int(text: str) -> int | None:
    """``text`` as an integer >= 1, else None (also for "", "2.5", "zero", a 5,000-digit number)."""
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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


def describe_kernels() -> str:
    """How the native recurrences run here, e.g. "packed weights, up to 2 threads" (a team also
    keeps to one thread per 32 hidden units and per 2^20 flops of a step) or "one BLAS call
    per step (the packed kernels need x86-64 with AVX2 and FMA)"; "" when unavailable."""
    mod = _load()[0]
    if mod is None:
        return ""
    n = mod.get_num_threads()
    if mod.packed_gemm_enabled():
        return f"packed weights, up to {n} thread{'s' if n != 1 else ''}"
    if not mod.packed_gemm_available():
        return "one BLAS call per step (the packed kernels need x86-64 with AVX2 and FMA)"
    return f"one BLAS call per step ({PACKED_ENV}=0)"


def fma_peak_gflops(threads: int | None = None, seconds: float = 0.1, repeats: int = 5) -> float | None:
    """The CPU's peak float32 FMA rate in GFLOP/s on ``threads`` threads (default: the native
    team's, see :func:`_default_threads`): the fastest of ``repeats`` timings of about
    ``seconds`` each, in which every thread runs 12 independent chains of vector FMAs at the
    packed kernels' width (AVX-512: 16 floats, AVX2: 8) in registers. That is the ceiling of
    every float32 matrix product on this CPU, BLAS included (cores x FMA units x width x 2 x
    clock, at the clock the CPU holds under this load). None where the extension or the packed
    kernels are missing (not x86-64 with AVX2 and FMA), or where fewer threads than asked ran
    (another team held the pool, or the system refused a thread).

    Raises:
        ValueError: threads < 1, seconds not > 0, or repeats < 1.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not seconds > 0 or repeats < 1:
        raise ValueError(f"seconds must be > 0 and repeats >= 1, got {seconds} and {repeats}")
    mod = _load()[0]
    if mod is None or not mod.packed_gemm_available():
        return None
    threads = threads or mod.get_num_threads()
    probe = 100_000
    mod.fma_peak_gflops(threads, probe)  # starts the team's threads
    t0 = time.perf_counter()
    mod.fma_peak_gflops(threads, probe)
    iterations = max(probe, int(probe * seconds / max(time.perf_counter() - t0, 1e-6)))
    runs = [mod.fma_peak_gflops(threads, iterations) for _ in range(repeats)]
    if any(team != threads for _, team in runs):
        return None
    return max(rate for rate, _ in runs)


def fusion_wanted(native_recurrence: bool) -> bool:
    """Whether ``mx.compile`` should fuse elementwise kernels in a run whose recurrence takes
    the native path (``native_recurrence``, from :func:`mlx_rnn.recurrence.path_for`) or not:
    per $MLX_RNN_CPU_FUSION, whose "auto" fuses only where the native recurrence does not
    serve the run (a GPU run, the op path: its gate math lives on fusion); always where the
    extension is missing (only it can switch fusion alone off).

    Raises:
        ValueError: a bad $MLX_RNN_CPU_FUSION (checked on every device, so junk never passes).
    """
    requested = switches.read().cpu_fusion
    if not available() or mx.default_device() != mx.cpu:
        return True
    if requested == "auto":
        return not native_recurrence
    return requested == "1"


def configure_fusion(native_recurrence: bool) -> bool:
    """Set MLX's compile mode for this process from :func:`fusion_wanted` (fused: MLX's
    default; else ``no_fuse``: graph simplification without generated kernels) before the
    step is traced; returns whether kernels are fused. The mode is process-wide.

    Raises:
        ValueError: a bad $MLX_RNN_CPU_FUSION.
    """
    fused = fusion_wanted(native_recurrence)
    mod = _load()[0]
    if mod is not None:
        mod.set_compile_fusion(fused)
    return fused


def describe_fusion(native_recurrence: bool) -> str:
    """The run header's words for what ``mx.compile`` builds at first use on the default device."""
    if mx.default_device() != mx.cpu:
        return "fused kernels compiled at first use"
    if fusion_wanted(native_recurrence):
        return "fused kernels built by the system compiler at first use (cached under $TMPDIR/mlx)"
    return "compiled step without fused kernels (nothing to build at first use)"
