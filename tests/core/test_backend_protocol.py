"""The backend interface declared once (core/backend.py): both frameworks' train, models and
parallel modules provide every name of its protocols, with the same signatures."""

from __future__ import annotations

import inspect

import pytest

from mlx_rnn.core import backend

PROTOCOLS = {"train": backend.TrainModule, "models": backend.ModelsModule, "parallel": backend.ParallelModule}
GETTERS = {"train": backend.train_module, "models": backend.models_module, "parallel": backend.parallel_module}


def _members(protocol) -> list[str]:
    return [name for name in protocol.__annotations__ if not name.startswith("_")]


@pytest.mark.parametrize("part", sorted(PROTOCOLS))
@pytest.mark.parametrize("framework", backend.FRAMEWORKS)
def test_each_framework_module_satisfies_its_protocol(framework, part):
    pytest.importorskip("mlx.core" if framework == "mlx" else "torch")
    module = GETTERS[part](framework)
    missing = [name for name in _members(PROTOCOLS[part]) if not hasattr(module, name)]
    assert not missing, f"{module.__name__} lacks {missing}"
    assert isinstance(module, PROTOCOLS[part])
    for name in _members(PROTOCOLS[part]):
        assert callable(getattr(module, name)), f"{module.__name__}.{name}"


@pytest.mark.parametrize("part", sorted(PROTOCOLS))
def test_the_two_frameworks_take_the_same_arguments(part):
    pytest.importorskip("mlx.core")
    pytest.importorskip("torch")
    mlx_mod, torch_mod = GETTERS[part]("mlx"), GETTERS[part]("torch")
    for name in _members(PROTOCOLS[part]):
        a, b = getattr(mlx_mod, name), getattr(torch_mod, name)
        if inspect.isclass(a):
            continue  # classes: their methods are checked by the parity tests
        pa = [p.name for p in inspect.signature(a).parameters.values()]
        pb = [p.name for p in inspect.signature(b).parameters.values()]
        extra = {"device"} if (part, name) == ("models", "load") else set()  # torch's load: a device
        assert pa == [p for p in pb if p not in extra], f"{name}: {pa} vs {pb}"


def test_a_module_missing_a_name_fails_the_protocol():
    class Partial:
        Trainer = object

    assert not isinstance(Partial(), backend.TrainModule)
