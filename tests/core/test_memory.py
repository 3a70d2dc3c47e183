"""Out of memory is one line, exit 2: the estimate refuses what cannot fit
before anything is allocated, in both trainers, and an allocation that still fails is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_rnn.core.config import make_config
from mlx_rnn.core import memory

from mlx_rnn.run import cli
from tests.synthetic import TINY, make_data_dir, run_script


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_estimate_counts_model_optimizer_and_activations():
    cfg = make_config("lm", embed_dim=8, hidden_size=16, num_layers=1, batch_size=4, seq_len=10)
    params = 27 * 8 + 64 * 8 + 64 * 16 + 2 * 64 + 27 * 16 + 27
    est = memory.estimate_bytes(cfg)
    assert est["model"] == est["optimizer"] == 12 * params
    assert est["activations"] == 2 * 4 * 40 * (8 + 7 * 16 + 27)
    assert est["total"] == est["model"] + est["optimizer"] + est["activations"]
    limit, source = memory.available_bytes()
    assert limit is None or (limit > 0 and source)


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_a_model_too_large_for_memory_is_refused_before_allocation(script, data, tmp_path):
    proc = run_script(script, "--task", "classify", "--data-dir", data, "--epochs", "1", "--save", tmp_path / "ck",
                      *TINY, "--hidden-size", "100000", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not enough memory" in lines[0] and " GB" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "ck").exists()


def test_allocation_failures_become_one_line():
    assert memory.allocation_message(MemoryError()).startswith("out of memory")
    msg = memory.allocation_message(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                                                 "not enough memory: you tried to allocate 40000000000 bytes.\nmore"))
    assert msg is not None and "\n" not in msg
    assert memory.allocation_message(RuntimeError("[malloc_or_wait] Unable to allocate 400 bytes")) is not None
    assert memory.allocation_message(RuntimeError("shape mismatch")) is None


def test_an_allocation_failure_during_training_exits_2_with_one_line(data, monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99 bytes")

    monkeypatch.setattr(cli, "train_task", boom)
    assert cli.main("mlx", ["--task", "classify", "--data-dir", str(data), *TINY, "--no-save"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: out of memory: DefaultCPUAllocator")
