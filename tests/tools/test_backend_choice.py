"""Which MLX and PyTorch builds `make setup` installs (mlx_rnn/tools/backend_choice.py): the CPU
builds without an NVIDIA driver, MLX's CUDA build matching the driver with one, never two MLX
back ends, a forced choice kept."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_rnn.tools import backend_choice as bc

ROOT = Path(__file__).resolve().parents[2]  # the repository


def test_linux_without_a_driver_gets_the_cpu_builds_as_before():
    c = bc.choose("auto", "Linux", None)
    assert c["BACKEND"] == "cpu" and c["MLX_EXTRA"] == "cpu" and c["TORCH_INDEX"] == bc.TORCH_CPU_INDEX
    assert c["MLX_REMOVE"].split() == ["mlx-cuda-12", "mlx-cuda-13"]


@pytest.mark.parametrize("cuda, backend, torch_index", [((13, 0), "cuda13", ""), ((13, 2), "cuda13", ""),
                                                         ((12, 4), "cuda12", bc.TORCH_CUDA12_INDEX)])
def test_an_nvidia_driver_picks_the_matching_cuda_build(cuda, backend, torch_index):
    c = bc.choose("auto", "Linux", cuda)
    assert (c["BACKEND"], c["MLX_EXTRA"], c["TORCH_INDEX"]) == (backend, backend, torch_index)
    assert "mlx-cpu" in c["MLX_REMOVE"].split() and bc.MLX_BACKEND_PACKAGES[backend] not in c["MLX_REMOVE"]
    assert f"CUDA {cuda[0]}.{cuda[1]}" in c["MESSAGE"]


def test_an_old_driver_gets_the_cpu_builds_with_a_reason():
    c = bc.choose("auto", "Linux", (11, 8))
    assert c["BACKEND"] == "cpu" and "only CUDA 11.8" in c["MESSAGE"]


def test_a_forced_backend_wins_over_the_driver():
    assert bc.choose("cpu", "Linux", (13, 0))["BACKEND"] == "cpu"
    assert bc.choose("cuda12", "Linux", None)["BACKEND"] == "cuda12"


def test_macos_gets_metal_and_refuses_cuda():
    c = bc.choose("auto", "Darwin")
    assert c["BACKEND"] == "metal" and c["MLX_EXTRA"] == "" and c["MLX_REMOVE"] == "" and c["TORCH_INDEX"] == ""
    with pytest.raises(ValueError, match="CUDA build is for Linux"):
        bc.choose("cuda13", "Darwin")
    with pytest.raises(ValueError, match="expected one of"):
        bc.choose("rocm", "Linux")


def _fake_nvidia_smi(tmp_path: Path, text: str, rc: int = 0) -> Path:
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\ncat <<'END'\n{text}\nEND\nexit {rc}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_the_driver_version_is_read_from_nvidia_smi(tmp_path):
    header = "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0     |"
    assert bc.driver_cuda_version(str(_fake_nvidia_smi(tmp_path, header))) == (13, 0)
    assert bc.driver_cuda_version(str(_fake_nvidia_smi(tmp_path, "NVIDIA-SMI has failed", rc=9))) is None
    assert bc.driver_cuda_version(str(tmp_path / "absent")) is None


def test_the_makefile_can_evaluate_the_choice(tmp_path):
    """The command line the Makefile runs: shell assignments, and exit 2 with one line for a bad BACKEND."""
    header = "| NVIDIA-SMI 570.1   Driver Version: 570.1   CUDA Version: 12.8 |"
    _fake_nvidia_smi(tmp_path, header)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT))
    script = (f'eval "$({sys.executable} -m mlx_rnn.tools.backend_choice --backend auto --torch-cuda12-index X)"; '
              'echo "$BACKEND|$MLX_EXTRA|$TORCH_INDEX|$MLX_REMOVE"')
    out = subprocess.run(["sh", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "cuda12|cuda12|X|mlx-cpu mlx-cuda-13", out.stderr
    bad = subprocess.run([sys.executable, "-m", "mlx_rnn.tools.backend_choice", "--backend", "rocm"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: BACKEND='rocm'") and not bad.stdout
