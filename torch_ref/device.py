"""The PyTorch device this process trains and evaluates on (CPU until one is chosen).

Its own module so that ``models`` and ``train`` both read it without importing each other.
"""

from __future__ import annotations

import torch

from mlx_rnn.core import distributed

_DEVICE = torch.device("cpu")


def current_device() -> torch.device:
    """The device chosen by :func:`select_device` (CPU until one is chosen)."""
    return _DEVICE


def select_device(name: str = "auto") -> str:
    """Choose the device: auto (MPS, then CUDA, then CPU), mps, cuda or cpu; returns its name.

    Raises:
        ValueError: the asked-for device is not available.
    """
    global _DEVICE
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        name = "mps" if has_mps else "cuda" if torch.cuda.is_available() else "cpu"
    if name == "mps" and not has_mps:
        raise ValueError("--device mps: MPS is not available in this PyTorch build/machine")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available in this PyTorch build/machine")
    if name not in ("mps", "cuda", "cpu"):
        raise ValueError(f"unknown torch device {name!r} (auto, mps, cuda, cpu)")
    _DEVICE = torch.device(f"cuda:{distributed.current().local_rank}" if name == "cuda" else name)
    return str(_DEVICE)


def synchronize() -> None:
    """Wait for queued device work (used around timers)."""
    if _DEVICE.type == "cuda":
        torch.cuda.synchronize()
    elif _DEVICE.type == "mps":
        torch.mps.synchronize()
