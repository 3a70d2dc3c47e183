"""Float32 precision, the same in both frameworks: full float32 by default, TF32 only when asked.

Why: MLX computes float32 matrix products as TF32 (a 10-bit mantissa) by default wherever the
hardware has matrix units: on CUDA GPUs (cuBLAS ``CUBLAS_COMPUTE_32F_FAST_TF32``) and on Apple
GPUs with neural accelerators (M5 and later); ``MLX_ENABLE_TF32`` defaults to 1 and is read
once, at the first such product (``mlx/utils.h``, ``env::enable_tf32``; MLX's own tests set it
to 0). PyTorch's cuDNN allows TF32 by default (``torch.backends.cudnn.allow_tf32``) while its
cuBLAS matmuls do not. So two frameworks left at their defaults train at different precisions,
with errors of about 1e-3 where float32 gives 1e-7.

The policy (docs/design.md, Precision):

- ``mlx_rnn`` sets ``MLX_ENABLE_TF32=0`` when it is imported (:func:`apply_mlx_default`, from
  ``mlx_rnn.device``, before MLX's first operation), unless the user set it;
- ``torch_ref`` turns TF32 off for cuBLAS matmuls and cuDNN when it is imported;
- one flag, ``--tf32`` (both trainers, ``benchmark.py``, ``compare.py``), allows TF32 in both
  (:func:`request_mlx_tf32` and ``torch_ref.device.set_tf32``);
- a user's own ``MLX_ENABLE_TF32`` wins over both the default and the flag, and is reported.

The precision that ran is reported as ``"float32"`` or ``"tf32"`` (:func:`mlx_precision`): on a
CPU always float32 (TF32 is a GPU tensor-core format); ``"tf32"`` means float32 products may
run as TF32 where the hardware has matrix units. Framework-neutral: imports neither framework.
"""

from __future__ import annotations

import os

#: MLX's switch, read by MLX itself once per process (atoi: 0 full float32, anything else TF32).
ENV = "MLX_ENABLE_TF32"
#: The value mlx-rnn itself wrote into ``MLX_ENABLE_TF32`` (so that a child process, which
#: inherits both, can tell mlx-rnn's default from a value the user set).
OWN_MARK = "MLX_RNN_TF32_SET"
FLOAT32, TF32 = "float32", "tf32"


def user_value() -> str | None:
    """``MLX_ENABLE_TF32`` as the user set it, or None when unset or set by mlx-rnn itself."""
    value = os.environ.get(ENV)
    if value is None or value == os.environ.get(OWN_MARK):
        return None
    return value


def _parse(value: str) -> bool:
    """MLX's reading of the switch (true: TF32 allowed).

    Raises:
        ValueError: not an integer (MLX's atoi would read it as 0; a typo is refused instead).
    """
    try:
        return int(value.strip()) != 0
    except ValueError:
        raise ValueError(f"{ENV}={value!r}: expected 0 (full float32) or 1 (TF32 allowed)") from None


def _write(tf32: bool) -> None:
    value = "1" if tf32 else "0"
    os.environ[ENV] = value
    os.environ[OWN_MARK] = value


def apply_mlx_default() -> None:
    """Full float32 for MLX unless the user set ``MLX_ENABLE_TF32``: call before MLX's first
    matrix product (``mlx_rnn.device`` does, on import)."""
    if user_value() is None:
        _write(False)


def request_mlx_tf32(tf32: bool) -> None:
    """Allow (``--tf32``) or forbid TF32 in MLX's float32 products from now on, unless the user
    set ``MLX_ENABLE_TF32`` (theirs wins). MLX reads the switch at its first matrix product on a
    GPU, so this takes effect only when called before that (the trainers call it right after
    parsing their flags).

    Raises:
        ValueError: the user's ``MLX_ENABLE_TF32`` is not an integer.
    """
    if user_value() is None:
        _write(tf32)
    else:
        _parse(user_value())


def mlx_tf32_allowed() -> bool:
    """Whether MLX's float32 matrix products may run as TF32 (on hardware with matrix units).

    Raises:
        ValueError: ``MLX_ENABLE_TF32`` is not an integer.
    """
    value = os.environ.get(ENV)
    return True if value is None else _parse(value)  # unset: MLX's own default, 1


def mlx_precision(device: str) -> str:
    """``"float32"`` or ``"tf32"``: what MLX's float32 products on ``device`` ("cpu"/"gpu") run as."""
    return TF32 if device != "cpu" and mlx_tf32_allowed() else FLOAT32


def describe(precision: str, tf32_allowed: bool, device: str, source: str | None = None) -> str:
    """The run header's words for ``precision`` (from :func:`mlx_precision` or torch's twin):
    ``"float32"``, ``"tf32 (--tf32)"``, ``"float32 (TF32 does not apply on the cpu)"``,
    ``"tf32 (MLX_ENABLE_TF32=1, the user's)"``. ``source``: the user's setting, when it decided."""
    if precision == FLOAT32 and tf32_allowed:
        return f"{FLOAT32} (TF32 does not apply on the {device})"
    if source is not None:
        return f"{precision} ({source}, the user's)"
    return f"{TF32} (--tf32)" if precision == TF32 else FLOAT32


def describe_mlx(device: str) -> str:
    """The run header's words for MLX's precision on ``device`` (see :func:`describe`)."""
    user = user_value()
    return describe(mlx_precision(device), mlx_tf32_allowed(), device,
                    None if user is None else f"{ENV}={user}")
