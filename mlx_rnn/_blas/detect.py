"""Which BLAS MLX really uses (detected, not assumed), and the one line every report prints."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

from .loader import find_libmlx, libc, object_at, object_path_of, read_got
from .preload import ENV_VAR, INSTALL_HINT, preload


def _classify(path: str | None) -> str:
    if not path:
        return "unknown"
    real = os.path.realpath(path).lower()
    low = path.lower() + " " + real
    base = os.path.basename(real)
    if "openblas" in low:
        return "openblas"
    if "mkl" in low:
        return "mkl"
    if "blis" in low:
        return "blis"
    if "atlas" in low:
        return "atlas"
    if "accelerate" in low or "veclib" in low:
        return "accelerate"
    if base.startswith("libmlx."):
        return "unresolved"
    if "mlx_cpu.libs" in low or base.startswith("libblas") or base.startswith("libcblas"):
        return "reference"
    return "unknown"


def _force_bind(mx: Any) -> None:
    a = mx.ones((2, 2), dtype=mx.float32)
    mx.eval(mx.matmul(a, a, stream=mx.cpu))


def blas_info(import_mlx: bool = True) -> dict:
    """Which BLAS MLX's CPU back end really calls for ``cblas_sgemm``.

    Returns ``{"name", "library", "preloaded", "reason", "method",
    "preload_library"}``:

    - ``name``: ``"openblas"``, ``"reference"`` (the wheel's netlib BLAS),
      ``"accelerate"`` (macOS), ``"mkl"``, ``"blis"``, ``"unknown"``,
      ``"unavailable"`` (mlx not installed) or ``"not-imported"`` (mlx not
      imported and ``import_mlx=False``);
    - ``library``: path of the shared object providing the resolved symbol;
    - ``preloaded``: whether ``preload()`` loaded a library this process;
    - ``reason``: why (not) preloaded;
    - ``method``: how it was found: ``"got"`` (libmlx's bound GOT slot),
      ``"lookup"`` (emulated loader lookup), ``"platform"`` (macOS).

    With ``import_mlx`` (default) it imports ``mlx.core`` if needed (the
    preload has already run by then) and runs one 2x2 matmul on the CPU to
    make sure the lazily bound slot is resolved.
    """
    st = preload()
    info: dict[str, Any] = {
        "name": "unknown",
        "library": None,
        "preloaded": st["preloaded"],
        "preload_library": st["library"],
        "reason": st["reason"],
        "method": None,
    }
    if sys.platform == "darwin":
        info.update(name="accelerate", method="platform",
                    library="/System/Library/Frameworks/Accelerate.framework")
        return info
    if sys.modules.get("mlx.core") is None:
        if not import_mlx:
            info["name"] = "not-imported"
            return info
        try:
            import mlx.core  # noqa: F401
        except ImportError as exc:
            info["name"] = "unavailable"
            info["reason"] = f"mlx is not installed ({exc})"
            return info
    mx = sys.modules["mlx.core"]
    if not sys.platform.startswith("linux"):
        info["method"] = "platform"
        return info
    found = find_libmlx()
    if found is None:
        info["reason"] += "; libmlx not found in the link map"
        return info
    libmlx, base = found
    path = _sgemm_from_got(mx, libmlx, base)
    if path is not None:
        info.update(name=_classify(path), library=path, method="got")
        return info
    path = _sgemm_from_lookup(libmlx)
    info.update(name=_classify(path), library=path, method="lookup")
    return info


def _sgemm_from_got(mx: Any, libmlx: str, base: int) -> str | None:
    """The object that libmlx's bound ``cblas_sgemm`` GOT slot points into (binding it first with
    a tiny matmul if needed); None when the slot is absent or still points into libmlx."""
    addr = read_got(libmlx, base, "cblas_sgemm")
    if addr is None:
        return None
    path, _ = object_at(addr)
    if path is None or os.path.realpath(path) == os.path.realpath(libmlx):
        try:  # not bound yet: bind it with a tiny matmul, read again
            _force_bind(mx)
            addr = read_got(libmlx, base, "cblas_sgemm")
            path, _ = object_at(addr or 0)
        except Exception:  # pragma: no cover - defensive
            path = None
    if path is not None and os.path.realpath(path) != os.path.realpath(libmlx):
        return path
    return None


def _sgemm_from_lookup(libmlx: str) -> str | None:
    """The object the dynamic loader would bind ``cblas_sgemm`` to, emulated: the global scope
    first, then libmlx's dependencies; None when neither has it."""
    path = None
    try:
        path = object_path_of(libc(), "cblas_sgemm")
    except OSError:  # pragma: no cover
        pass
    if path is None:
        try:
            lib = ctypes.CDLL(libmlx, mode=getattr(os, "RTLD_NOLOAD", 4) | getattr(os, "RTLD_LAZY", 1))
            path = object_path_of(lib, "cblas_sgemm")
        except OSError:
            path = None
    return path


_PRETTY = {
    "openblas": "OpenBLAS",
    "reference": "reference BLAS",
    "accelerate": "Accelerate",
    "mkl": "MKL",
    "blis": "BLIS",
}


def describe(info: dict | None = None) -> str:
    """One line for training/benchmark headers, e.g.

    ``MLX BLAS: OpenBLAS (/usr/lib/x86_64-linux-gnu/libopenblas.so.0, preloaded)``
    or ``MLX BLAS: reference BLAS (slow; install Debian's libopenblas0-pthread
    as root: apt-get install libopenblas0-pthread)``.
    """
    info = blas_info() if info is None else info
    name = info.get("name")
    lib = info.get("library")
    pretty = _PRETTY.get(name, name)
    if name == "accelerate":
        return "MLX BLAS: Accelerate (macOS)"
    if name == "reference":
        req = info.get("reason") or ""
        if ENV_VAR in req:
            return f"MLX BLAS: reference BLAS (slow; {req})"
        if req.startswith("too late"):
            return ("MLX BLAS: reference BLAS (slow; import mlx_rnn._blas before "
                    "mlx.core so it can preload OpenBLAS)")
        return f"MLX BLAS: reference BLAS (slow; {INSTALL_HINT})"
    if name in ("unavailable", "not-imported"):
        return f"MLX BLAS: {name} ({info.get('reason')})"
    where = lib or "?"
    tag = "preloaded" if info.get("preloaded") else "linked"
    return f"MLX BLAS: {pretty} ({where}, {tag})"
