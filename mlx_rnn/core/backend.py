"""The one place a framework is chosen: "mlx" (package ``mlx_rnn``) or "torch" (``torch_ref``).

Both packages offer the same modules with the same API (``train``: Trainer, select_device,
synchronize, ...; ``models``: load, build_model, wrap; ``parallel``: init_distributed,
stream_scorer). Everything outside them reaches a framework through the functions here, by
the framework's name or by one of its objects, and imports it only when asked.
"""

from __future__ import annotations

import importlib

FRAMEWORKS = ("mlx", "torch")
_PACKAGES = {"mlx": "mlx_rnn", "torch": "torch_ref"}


def _module(framework: str, part: str):
    if framework not in _PACKAGES:
        raise ValueError(f"unknown framework {framework!r} (one of {', '.join(FRAMEWORKS)})")
    return importlib.import_module(f"{_PACKAGES[framework]}.{part}")


def train_module(framework: str):
    """The ``train`` module of ``framework``.

    Raises:
        ValueError: torch asked for where PyTorch is not installed (one line).
    """
    try:
        return _module(framework, "train")
    except ImportError as e:
        if framework == "mlx":
            raise
        raise ValueError(f"PyTorch is not installed ({e}); install the 'torch' extra") from None


def models_module(framework: str):
    """The ``models`` module of ``framework`` (its ``load``, ``build_model`` and ``wrap``)."""
    return _module(framework, "models")


def parallel_module(framework: str):
    """The ``parallel`` module of ``framework`` (data-parallel set-up, batched scoring)."""
    return _module(framework, "parallel")


def framework_of(obj) -> str:
    """The framework whose package defined ``obj``'s class (a wrapper, a model, a Trainer)."""
    package = type(obj).__module__.split(".")[0]
    for name, pkg in _PACKAGES.items():
        if pkg == package:
            return name
    raise ValueError(f"{type(obj).__name__} belongs to neither mlx_rnn nor torch_ref")


def load(framework: str, path, task: str | None = None):
    """``mlx_rnn.load`` or ``torch_ref.load``: a checkpoint directory's wrapper in ``framework``."""
    return models_module(framework).load(path, task)


def stream_scorer(wrapper):
    """The batched, state-carrying scorer of an LM wrapper's framework."""
    return parallel_module(framework_of(wrapper)).stream_scorer(wrapper)
