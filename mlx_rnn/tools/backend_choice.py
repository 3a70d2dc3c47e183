"""Which MLX and PyTorch builds ``make setup`` installs on this machine (standard library only: it
runs before the package is installed, with the Python that creates the virtual environment).

    python3 -m mlx_rnn.tools.backend_choice [--backend auto|cpu|cuda12|cuda13]

prints shell assignments that the Makefile evaluates::

    BACKEND=cuda13       # what was chosen: metal (macOS), cpu, cuda12 or cuda13
    MLX_EXTRA=cuda13     # the mlx-rnn extra that pulls MLX's back end (mlx[cpu], mlx[cuda13] ...)
    MLX_REMOVE='mlx-cpu mlx-cuda-12'   # MLX back ends to uninstall first: two never share a venv
    TORCH_INDEX=         # the index PyTorch comes from ('' = the default index, PyPI)
    MESSAGE='...'        # one line saying what was chosen and why

``auto`` (the default): macOS gets MLX's Metal build (the base ``mlx`` package) and PyTorch from
PyPI; Linux without a working ``nvidia-smi`` gets MLX's CPU build and PyTorch's CPU build (from
PyTorch's CPU index, as before); Linux with an NVIDIA driver gets MLX's CUDA build for the CUDA
version the driver supports (13 -> ``mlx[cuda13]``, 12 -> ``mlx[cuda12]``; older: the CPU
builds, with a note) and PyTorch's CUDA build (PyPI's default build for CUDA 13, PyTorch's
CUDA 12.8 index for CUDA 12). ``--backend cpu|cuda12|cuda13`` forces one (``make setup
BACKEND=cpu``). Exit code 2 for an unknown ``--backend``.
"""

from __future__ import annotations

import argparse
import platform
import re
import shlex
import shutil
import subprocess
import sys

#: The MLX back-end packages, by extra (each ships its own libmlx.so: one per environment).
MLX_BACKEND_PACKAGES = {"cpu": "mlx-cpu", "cuda12": "mlx-cuda-12", "cuda13": "mlx-cuda-13"}
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA12_INDEX = "https://download.pytorch.org/whl/cu128"
CHOICES = ("auto", "cpu", "cuda12", "cuda13")


def driver_cuda_version(nvidia_smi: str | None = None) -> tuple[int, int] | None:
    """(major, minor) of the CUDA version the NVIDIA driver supports, from ``nvidia-smi``'s header
    ("CUDA Version: 13.0"); None without a working ``nvidia-smi`` (no driver, no GPU)."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or found is None:
        return None
    return int(found.group(1)), int(found.group(2))


DETECT = "detect"  # choose(): read the driver's CUDA version from nvidia-smi


def choose(backend: str = "auto", system: str | None = None, cuda=DETECT) -> dict:
    """The builds to install: ``{"BACKEND", "MLX_EXTRA", "MLX_REMOVE", "TORCH_INDEX", "MESSAGE"}``.

    ``system``: ``platform.system()`` (given in tests); ``cuda``: the driver's CUDA version as
    (major, minor), None for no driver, or :data:`DETECT` (:func:`driver_cuda_version`, read only
    when needed).

    Raises:
        ValueError: an unknown ``backend``, or a CUDA build asked for on macOS.
    """
    if backend not in CHOICES:
        raise ValueError(f"BACKEND={backend!r}: expected one of {', '.join(CHOICES)}")
    system = system or platform.system()
    if system == "Darwin":
        if backend.startswith("cuda"):
            raise ValueError(f"BACKEND={backend}: MLX's CUDA build is for Linux; macOS uses Metal (BACKEND=auto)")
        return _result("metal", "", "", "macOS: MLX's Metal build (GPU), PyTorch from PyPI (MPS)")
    why = f"BACKEND={backend} was asked for"
    if backend == "auto":
        cuda = driver_cuda_version() if cuda == DETECT else cuda
        if cuda is None:
            backend, why = "cpu", "no NVIDIA driver: nvidia-smi not found or failing"
        elif cuda[0] >= 13:
            backend, why = "cuda13", f"the NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}"
        elif cuda[0] == 12:
            backend, why = "cuda12", f"the NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}"
        else:
            backend, why = "cpu", (f"the NVIDIA driver supports only CUDA {cuda[0]}.{cuda[1]}; MLX's CUDA build "
                                   "needs 12 or 13 (update the driver, then make setup BACKEND=auto)")
    if backend == "cpu":
        return _result("cpu", TORCH_CPU_INDEX, "cpu",
                       f"{system}: MLX's CPU build and PyTorch's CPU build ({why}); BACKEND=cuda13 or cuda12 forces a CUDA build")
    torch_index = "" if backend == "cuda13" else TORCH_CUDA12_INDEX
    return _result(backend, torch_index, backend,
                   f"{system} with an NVIDIA GPU: MLX's CUDA {backend[4:]} build and PyTorch's CUDA build ({why}); "
                   "BACKEND=cpu forces the CPU builds")


def _result(backend: str, torch_index: str, extra: str, message: str) -> dict:
    remove = " ".join(pkg for name, pkg in MLX_BACKEND_PACKAGES.items() if name != extra)
    return {"BACKEND": backend, "MLX_EXTRA": extra, "MLX_REMOVE": remove if extra else "",
            "TORCH_INDEX": torch_index, "MESSAGE": message}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mlx_rnn.tools.backend_choice",
                                description="Print (as shell assignments) which MLX and PyTorch builds make setup installs.")
    p.add_argument("--backend", default="auto", help=f"one of {', '.join(CHOICES)} (default auto: from the machine)")
    p.add_argument("--torch-cpu-index", default=TORCH_CPU_INDEX, help=f"PyTorch's CPU index (default {TORCH_CPU_INDEX})")
    p.add_argument("--torch-cuda12-index", default=TORCH_CUDA12_INDEX,
                   help=f"PyTorch's index for CUDA 12 drivers (default {TORCH_CUDA12_INDEX})")
    args = p.parse_args(argv)
    try:
        chosen = choose(args.backend.strip().lower() or "auto")
        chosen["TORCH_INDEX"] = {TORCH_CPU_INDEX: args.torch_cpu_index,
                                 TORCH_CUDA12_INDEX: args.torch_cuda12_index}.get(chosen["TORCH_INDEX"], chosen["TORCH_INDEX"])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, value in chosen.items():
        print(f"{key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
