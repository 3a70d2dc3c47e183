"""The PyTorch device this process trains and evaluates on (CPU until one is chosen), and its
float32 precision.

Its own module so that ``models`` and ``train`` both read it without importing each other.
Importing it turns TF32 off for cuBLAS matmuls and cuDNN (cuDNN allows TF32 by default): full
float32 unless ``--tf32`` asks (:func:`set_tf32`; the policy: :mod:`mlx_rnn.core.precision`).
"""

from __future__ import annotations

import torch

from mlx_rnn.core import distributed
from mlx_rnn.core import precision as _precision

_DEVICE = torch.device("cpu")


def set_tf32(allowed: bool) -> None:
    """Allow (``--tf32``) or forbid TF32 in float32 cuBLAS matmuls and cuDNN (LSTM included).

    The legacy ``allow_tf32`` switches: they set cuDNN's RNN and convolution precision together,
    where mixing them with the newer ``fp32_precision`` API makes PyTorch raise.
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(allowed)
    torch.backends.cudnn.allow_tf32 = bool(allowed)


def tf32_allowed() -> bool:
    """Whether float32 matmuls or cuDNN may run as TF32 (on a CUDA GPU with tensor cores)."""
    return bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)


def precision() -> str:
    """``"float32"`` or ``"tf32"``: what float32 products on the chosen device run as (TF32 is
    CUDA's only: on the CPU and MPS always float32)."""
    return _precision.TF32 if _DEVICE.type == "cuda" and tf32_allowed() else _precision.FLOAT32


def describe_precision() -> str:
    """The run header's words for :func:`precision` (:func:`mlx_rnn.core.precision.describe`)."""
    return _precision.describe(precision(), tf32_allowed(), _DEVICE.type)


set_tf32(False)  # the policy: full float32 unless asked


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
