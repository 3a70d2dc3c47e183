"""Preload an optimised CBLAS with ``RTLD_GLOBAL`` before ``mlx.core`` (Linux), once per process.

Importing this module runs :func:`preload`: the one import side effect of the package, reached
through :mod:`mlx_rnn.device` (see :mod:`mlx_rnn._blas` for why and how). Also the thread
count of the preloaded library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

from ..core import switches  # (the standard library only: safe before mlx.core)
from .loader import object_path_of

ENV_VAR = switches.BLAS
# OpenBLAS's idle threads spin (sched_yield) for 2**28 cycles after each call by default,
# about 0.1 s: between MLX's matmuls they never sleep and take the second core from the native
# LSTM's own thread team (mlx_rnn/native/src/packed.h). 2**4 cycles puts them to sleep at once;
# measured on the 2-core test VM: default LM step 170 -> 142 ms with the team (docs/native.md).
# OpenBLAS reads it when it loads; a value the user set is kept.
TIMEOUT_ENV = "OPENBLAS_THREAD_TIMEOUT"
TIMEOUT_DEFAULT = "4"
_OPT_OUT = {"reference", "ref", "none", "off", "0", "no", "false"}
INSTALL_HINT = (
    "install Debian's libopenblas0-pthread as root: apt-get install libopenblas0-pthread"
)

# Names tried in order when $MLX_RNN_BLAS is not set (Linux only).
_CANDIDATE_NAMES = (
    "libopenblas.so.0",
    "libopenblas.so",
    "libopenblasp.so.0",
    "libblis.so.4",
)
_CANDIDATE_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    os.path.join(sys.prefix, "lib"),
)

_STATE: dict[str, Any] | None = None  # result of the one preload attempt
_HANDLES: list[Any] = []  # keep preloaded CDLL objects alive


# --------------------------------------------------------------------------
# preload
# --------------------------------------------------------------------------


def _has_cblas(lib: Any) -> bool:
    try:
        getattr(lib, "cblas_sgemm")
        return True
    except AttributeError:
        return False


def _try_load(name: str) -> tuple[Any | None, str]:
    """Open ``name`` locally, check it exports cblas_sgemm, promote to global.
    Returns (the library, "") or (None, why not: the loader's message, which names the file)."""
    try:
        local = ctypes.CDLL(name, mode=getattr(os, "RTLD_LAZY", 1) | getattr(os, "RTLD_LOCAL", 0))
    except OSError as exc:
        return None, " ".join(str(exc).split())
    if not _has_cblas(local):
        return None, f"{name} exports no cblas_sgemm"
    try:
        glob = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL | getattr(os, "RTLD_LAZY", 1))
    except OSError as exc:  # pragma: no cover - already opened once
        return None, " ".join(str(exc).split())
    return glob, ""


def _load_with_timeout(name: str) -> tuple[Any | None, str]:
    """:func:`_try_load` with $OPENBLAS_THREAD_TIMEOUT set for OpenBLAS's start-up (unless the
    user set it), then removed again, so that child processes see the user's environment."""
    ours = TIMEOUT_ENV not in os.environ
    if ours:
        os.environ[TIMEOUT_ENV] = TIMEOUT_DEFAULT
    try:
        return _try_load(name)
    finally:
        if ours:
            os.environ.pop(TIMEOUT_ENV, None)


def _candidates() -> list[str]:
    out: list[str] = []
    for name in _CANDIDATE_NAMES:
        out.append(name)  # loader cache / LD_LIBRARY_PATH
        for d in _CANDIDATE_DIRS:
            p = os.path.join(d, name)
            if os.path.exists(p):
                out.append(p)
    found = ctypes.util.find_library("openblas")
    if found:
        out.append(found)
    seen: set[str] = set()
    return [c for c in out if not (c in seen or seen.add(c))]


def _mlx_installed() -> bool:
    if sys.modules.get("mlx.core") is not None:
        return True
    try:
        import importlib.util

        return importlib.util.find_spec("mlx") is not None and sys.modules.get("mlx", 0) is not None
    except (ImportError, ValueError):
        return False


def preload() -> dict:
    """Load an optimised CBLAS with ``RTLD_GLOBAL`` before MLX; at most once.

    Returns a dict (a copy of the recorded outcome):
    ``{"preloaded": bool, "library": str | None, "requested": str | None,
    "reason": str}``. Idempotent: later calls return the first outcome.
    Runs automatically when this module is imported.

    Raises:
        ValueError: ``$MLX_RNN_BLAS`` names a library that cannot be opened or exports no
            ``cblas_sgemm`` (Linux, before ``mlx.core``; the message names the variable, its
            value and the loader's reason). Nothing is recorded, so every later call (and
            import) refuses it again.
    """
    global _STATE
    if _STATE is not None:
        return dict(_STATE)
    state: dict[str, Any] = {
        "preloaded": False,
        "library": None,
        "requested": switches.read_one("blas"),  # (this switch alone: the others fail later, in a script's hands)
        "reason": "",
    }
    req = (state["requested"] or "").strip()
    if sys.platform == "darwin":
        state["reason"] = "macOS: MLX uses Accelerate; nothing to do"
    elif not sys.platform.startswith("linux"):
        state["reason"] = f"platform {sys.platform}: no BLAS preload attempted"
    elif not _mlx_installed():
        state["reason"] = "mlx is not installed; nothing to do"
    elif req.lower() in _OPT_OUT:
        state["reason"] = f"{ENV_VAR}={req}: keeping MLX's linked BLAS"
    elif sys.modules.get("mlx.core") is not None:
        state["reason"] = (
            "too late: mlx.core was imported before mlx_rnn._blas, "
            "so libmlx.so is bound to the BLAS it was linked with"
        )
    else:
        names = [req] if req else _candidates()
        for name in names:
            lib, err = _load_with_timeout(name)
            if lib is not None:
                _HANDLES.append(lib)
                state["preloaded"] = True
                state["library"] = object_path_of(lib, "cblas_sgemm") or name
                state["reason"] = (
                    f"loaded from {ENV_VAR}" if req else "found a system OpenBLAS/BLIS"
                )
                break
            if req:  # refused, like every other switch: no silent fall-back to the slow BLAS
                raise ValueError(
                    f"{ENV_VAR}={req!r} is not a BLAS library MLX can use ({err}): give a shared "
                    "library that exports cblas_sgemm (e.g. libopenblas.so.0), or 'reference' to keep "
                    "MLX's linked BLAS"
                )
        else:
            state["reason"] = "no optimised CBLAS found (" + INSTALL_HINT + ")"
    _STATE = state
    return dict(state)


def _preloaded_lib() -> Any | None:
    return _HANDLES[0] if _HANDLES else None


def set_num_threads(n: int) -> bool:
    """Set the thread count of the preloaded OpenBLAS/BLIS (what MLX's CPU
    matmuls use; MLX's own CPU ops are single-threaded). Same effect as
    ``OPENBLAS_NUM_THREADS`` but at run time. Returns False when no preloaded
    library offers it (reference BLAS, Accelerate)."""
    lib = _preloaded_lib()
    if lib is None:
        return False
    for name in ("openblas_set_num_threads", "bli_thread_set_num_threads"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn.restype = None
            fn(int(n))
            return True
    return False


def get_num_threads() -> int | None:
    """Thread count of the preloaded OpenBLAS/BLIS, or None if unknown."""
    lib = _preloaded_lib()
    if lib is None:
        return None
    for name in ("openblas_get_num_threads", "bli_thread_get_num_threads"):
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.argtypes = []
            fn.restype = ctypes.c_int
            return int(fn())
    return None


preload()
