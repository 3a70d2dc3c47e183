"""The one place a framework is chosen: "mlx" (package ``mlx_rnn``) or "torch" (``torch_ref``).

Both packages offer the same modules with the same API, declared once here as the protocols
:class:`TrainModule`, :class:`ModelsModule` and :class:`ParallelModule` (a test checks that both
frameworks' modules satisfy them). Everything outside the packages reaches a framework through
the functions here, by the framework's name or by one of its objects, and imports it only
when asked. A new framework is a package with these three modules and a line in ``_PACKAGES``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Protocol, runtime_checkable

FRAMEWORKS = ("mlx", "torch")
_PACKAGES = {"mlx": "mlx_rnn", "torch": "torch_ref"}


@runtime_checkable
class TrainModule(Protocol):
    """``mlx_rnn.train`` / ``torch_ref.train``: training on one device."""

    Trainer: type  #: Trainer(config, train_data): train_epoch, evaluation, state to save and restore
    select_device: Callable[[str], Any]  #: "auto" or a device name -> the device runs will use
    synchronize: Callable[[], None]  #: wait for the device's queued work (timing)
    set_tf32: Callable[[bool], None]  #: --tf32: allow TF32 products on a GPU (before the first one)
    precision: Callable[[], str]  #: "float32" or "tf32": what float32 products run as now
    describe_precision: Callable[[], str]  #: the run header's words for precision()
    describe_backend: Callable[[], str]  #: the run header's line: BLAS, recurrence path, optimizer
    framework_version: Callable[[], str]  #: the framework's version string


@runtime_checkable
class ModelsModule(Protocol):
    """``mlx_rnn.models`` / ``torch_ref.models``: the networks and their wrappers."""

    RNNClassifier: type  #: the classifier wrapper (core/wrappers.ClassifierWrapper)
    RNNLanguageModel: type  #: the LM wrapper (core/wrappers.LanguageModelWrapper)
    build_model: Callable[[Any], Any]  #: a fresh network for a RunConfig (core/config.py)
    wrap: Callable[[Any, Any], Any]  #: (network, RunConfig) -> the wrapper of a trained network
    load: Callable[..., Any]  #: load(path, task=None): a checkpoint directory's wrapper


@runtime_checkable
class ParallelModule(Protocol):
    """``mlx_rnn.parallel`` / ``torch_ref.parallel``: data-parallel training and batched scoring."""

    init_distributed: Callable[..., Any]  #: (device, timeout) -> DistInfo: join the launcher's ranks
    setup_model: Callable[[Any, Any, Any], None]  #: same initial weights on every rank
    stream_scorer: Callable[[Any], Any]  #: an LM wrapper's batched, state-carrying scorer
    shutdown: Callable[[], None]  #: end this rank's part (after the last collective)


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
