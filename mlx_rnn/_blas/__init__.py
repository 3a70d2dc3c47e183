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
   and keep the wheel's reference BLAS.
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

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

__all__ = [
    "preload",
    "blas_info",
    "describe",
    "measure_sgemm_gflops_mlx",
    "measure_sgemm_gflops_torch",
    "set_num_threads",
    "get_num_threads",
    "ENV_VAR",
]

ENV_VAR = "MLX_RNN_BLAS"
_OPT_OUT = {"reference", "ref", "none", "off", "0", "no", "false"}
_INSTALL_HINT = (
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
    """Open ``name`` locally, check it exports cblas_sgemm, promote to global."""
    try:
        local = ctypes.CDLL(name, mode=getattr(os, "RTLD_LAZY", 1) | getattr(os, "RTLD_LOCAL", 0))
    except OSError as exc:
        return None, f"{name}: {exc}"
    if not _has_cblas(local):
        return None, f"{name}: no cblas_sgemm symbol"
    try:
        glob = ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL | getattr(os, "RTLD_LAZY", 1))
    except OSError as exc:  # pragma: no cover - already opened once
        return None, f"{name}: {exc}"
    return glob, ""


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
    """
    global _STATE
    if _STATE is not None:
        return dict(_STATE)
    state: dict[str, Any] = {
        "preloaded": False,
        "library": None,
        "requested": os.environ.get(ENV_VAR) or None,
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
        errors: list[str] = []
        for name in names:
            lib, err = _try_load(name)
            if lib is not None:
                _HANDLES.append(lib)
                state["preloaded"] = True
                state["library"] = _object_path_of(lib, "cblas_sgemm") or name
                state["reason"] = (
                    f"loaded from {ENV_VAR}" if req else "found a system OpenBLAS/BLIS"
                )
                break
            errors.append(err)
        else:
            if req:
                state["reason"] = f"{ENV_VAR}={req} could not be used: " + "; ".join(errors)
            else:
                state["reason"] = "no optimised CBLAS found (" + _INSTALL_HINT + ")"
    _STATE = state
    return dict(state)


# --------------------------------------------------------------------------
# detection helpers (glibc: dladdr, dlinfo/link_map)
# --------------------------------------------------------------------------


class _DlInfo(ctypes.Structure):
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


class _LinkMap(ctypes.Structure):
    pass


_LinkMap._fields_ = [
    ("l_addr", ctypes.c_size_t),
    ("l_name", ctypes.c_char_p),
    ("l_ld", ctypes.c_void_p),
    ("l_next", ctypes.POINTER(_LinkMap)),
    ("l_prev", ctypes.POINTER(_LinkMap)),
]

_RTLD_DI_LINKMAP = 2


def _libc() -> Any:
    return ctypes.CDLL(None)


def _dladdr(addr: int) -> tuple[str | None, str | None]:
    """(path of the object containing addr, nearest symbol name) or (None, None)."""
    if not addr:
        return None, None
    try:
        dladdr = _libc().dladdr
    except AttributeError:
        try:
            dladdr = ctypes.CDLL(ctypes.util.find_library("dl") or "libdl.so.2").dladdr
        except (OSError, AttributeError):
            return None, None
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if not dladdr(ctypes.c_void_p(addr), ctypes.byref(info)):
        return None, None
    fname = info.dli_fname.decode(errors="replace") if info.dli_fname else None
    sname = info.dli_sname.decode(errors="replace") if info.dli_sname else None
    return fname, sname


def _symbol_addr(lib: Any, name: str) -> int:
    try:
        return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0
    except AttributeError:
        return 0


def _object_path_of(lib: Any, symbol: str) -> str | None:
    return _dladdr(_symbol_addr(lib, symbol))[0]


def _loaded_objects() -> list[tuple[str, int]]:
    """(path, load base) of every object in the main link-map namespace."""
    try:
        dlinfo = _libc().dlinfo
    except AttributeError:
        return []
    dlinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    dlinfo.restype = ctypes.c_int
    lm = ctypes.POINTER(_LinkMap)()
    if dlinfo(_libc()._handle, _RTLD_DI_LINKMAP, ctypes.byref(lm)) != 0 or not lm:
        return []
    while lm.contents.l_prev:  # rewind to the head
        lm = lm.contents.l_prev
    out = []
    while lm:
        name = lm.contents.l_name.decode(errors="replace") if lm.contents.l_name else ""
        out.append((name, lm.contents.l_addr))
        lm = lm.contents.l_next
    return out


def _find_libmlx() -> tuple[str, int] | None:
    for path, base in _loaded_objects():
        if os.path.basename(path).startswith("libmlx."):
            return path, base
    return None


def _got_offset(path: str, symbol: str) -> int | None:
    """Offset (vaddr) of the GOT slot the loader fills for ``symbol`` in ``path``.

    Parses the ELF64 little-endian section headers, the .dynsym/.dynstr tables
    and every SHT_RELA section (``.rela.plt``: R_X86_64_JUMP_SLOT /
    R_AARCH64_JUMP_SLOT; ``.rela.dyn``: GLOB_DAT).
    """
    import mmap
    import struct

    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
                return None
            e_shoff, = struct.unpack_from("<Q", m, 0x28)
            e_shentsize, e_shnum, _ = struct.unpack_from("<HHH", m, 0x3A)
            secs = []
            for i in range(e_shnum):
                (_, sh_type, _, _, sh_off, sh_size, sh_link, _, _, sh_entsize) = struct.unpack_from(
                    "<IIQQQQIIQQ", m, e_shoff + i * e_shentsize
                )
                secs.append((sh_type, sh_off, sh_size, sh_link, sh_entsize))
            for sh_type, off, size, link, entsize in secs:
                if sh_type != 4 or not entsize:  # SHT_RELA
                    continue
                sym_type, sym_off, _, str_idx, sym_entsize = secs[link]
                if sym_type not in (11, 2):  # SHT_DYNSYM / SHT_SYMTAB
                    continue
                str_off = secs[str_idx][1]
                want = symbol.encode()
                for j in range(size // entsize):
                    r_offset, r_info = struct.unpack_from("<QQ", m, off + j * entsize)
                    sym = r_info >> 32
                    if not sym:
                        continue
                    st_name, = struct.unpack_from("<I", m, sym_off + sym * sym_entsize)
                    start = str_off + st_name
                    end = m.find(b"\0", start)
                    if m[start:end] == want:
                        return r_offset
    except (OSError, ValueError, struct.error, IndexError):
        return None
    return None


def _read_got(libmlx: str, base: int, symbol: str) -> int | None:
    off = _got_offset(libmlx, symbol)
    if off is None:
        return None
    return ctypes.c_void_p.from_address(base + off).value or 0


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
    found = _find_libmlx()
    if found is None:
        info["reason"] += "; libmlx not found in the link map"
        return info
    libmlx, base = found
    addr = _read_got(libmlx, base, "cblas_sgemm")
    if addr is not None:
        path, _ = _dladdr(addr)
        if path is None or os.path.realpath(path) == os.path.realpath(libmlx):
            try:  # not bound yet: bind it with a tiny matmul, read again
                _force_bind(mx)
                addr = _read_got(libmlx, base, "cblas_sgemm")
                path, _ = _dladdr(addr or 0)
            except Exception:  # pragma: no cover - defensive
                path = None
        if path is not None and os.path.realpath(path) != os.path.realpath(libmlx):
            info.update(name=_classify(path), library=path, method="got")
            return info
    # Fallback: emulate the loader: global scope first, then libmlx's deps.
    path = None
    try:
        path = _object_path_of(_libc(), "cblas_sgemm")
    except OSError:  # pragma: no cover
        pass
    if path is None:
        try:
            lib = ctypes.CDLL(libmlx, mode=getattr(os, "RTLD_NOLOAD", 4) | getattr(os, "RTLD_LAZY", 1))
            path = _object_path_of(lib, "cblas_sgemm")
        except OSError:
            path = None
    info.update(name=_classify(path), library=path, method="lookup")
    return info


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
        return f"MLX BLAS: reference BLAS (slow; {_INSTALL_HINT})"
    if name in ("unavailable", "not-imported"):
        return f"MLX BLAS: {name} ({info.get('reason')})"
    where = lib or "?"
    tag = "preloaded" if info.get("preloaded") else "linked"
    return f"MLX BLAS: {pretty} ({where}, {tag})"


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


# --------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else 0.5 * (xs[k - 1] + xs[k])


def measure_sgemm_gflops_mlx(n: int = 1024, repeats: int = 10, warmup: int = 2,
                             device: str = "cpu") -> float:
    """fp32 (n x n) @ (n x n) rate in GFLOP/s (2 n^3 per product) under MLX.

    Each timed product is forced with ``mx.eval`` before the clock stops; the
    warm-up products are not timed. Returns the median over ``repeats``.
    """
    import time

    import mlx.core as mx

    dev = mx.cpu if device == "cpu" else mx.gpu
    with mx.stream(dev):
        a = mx.random.normal((n, n), dtype=mx.float32)
        b = mx.random.normal((n, n), dtype=mx.float32)
        mx.eval(a, b)
        for _ in range(warmup):
            mx.eval(a @ b)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            c = a @ b
            mx.eval(c)
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / _median(times) / 1e9


def measure_sgemm_gflops_torch(n: int = 1024, repeats: int = 10, warmup: int = 2,
                               device: str = "cpu") -> float:
    """fp32 (n x n) @ (n x n) rate in GFLOP/s under PyTorch (median of repeats).

    Synchronises CUDA/MPS before stopping the clock; warm-up excluded.
    """
    import time

    import torch

    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

    a = torch.randn(n, n, dtype=torch.float32, device=dev)
    b = torch.randn(n, n, dtype=torch.float32, device=dev)
    with torch.no_grad():
        for _ in range(warmup):
            a @ b
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            sync()
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / _median(times) / 1e9


preload()
