"""The precision policy (mlx_rnn.core.precision): full float32 by default in both frameworks, TF32
only with --tf32, a user's own MLX_ENABLE_TF32 kept and reported. Each case that depends on the
environment at import runs in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.synthetic import TINY, error_line, run_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


def _python(code: str, env: dict) -> dict:
    """Run ``code`` in a fresh interpreter with ``env`` (on top of a clean environment); it prints
    one ``RESULT {json}`` line."""
    full = {k: v for k, v in os.environ.items() if k not in ("MLX_ENABLE_TF32", "MLX_RNN_TF32_SET")}
    full.update(env)
    full["PYTHONPATH"] = ROOT
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


MLX_SIDE = """
import json, os
import mlx_rnn.device
from mlx_rnn import train as mt
from mlx_rnn.core import precision as p
out = {"on_import": os.environ.get("MLX_ENABLE_TF32"), "cpu": mt.precision(), "gpu": p.mlx_precision("gpu"),
       "describe_gpu": p.describe_mlx("gpu")}
mt.set_tf32(True)
out.update(after_flag=os.environ.get("MLX_ENABLE_TF32"), gpu_flag=p.mlx_precision("gpu"), cpu_flag=mt.precision(),
           describe_gpu_flag=p.describe_mlx("gpu"), describe_cpu_flag=mt.describe_precision())
mt.set_tf32(False)
out["after_no_flag"] = os.environ.get("MLX_ENABLE_TF32")
print("RESULT " + json.dumps(out))
"""


def test_mlx_full_float32_by_default_and_the_flag_opts_in():
    r = _python(MLX_SIDE, {})
    assert r["on_import"] == "0"  # set by importing mlx_rnn, before MLX's first operation
    assert (r["cpu"], r["gpu"]) == ("float32", "float32")
    assert r["describe_gpu"] == "float32"
    assert r["after_flag"] == "1" and r["gpu_flag"] == "tf32" and r["describe_gpu_flag"] == "tf32 (--tf32)"
    assert r["cpu_flag"] == "float32" and r["describe_cpu_flag"] == "float32 (TF32 does not apply on the cpu)"
    assert r["after_no_flag"] == "0"


@pytest.mark.parametrize("value, gpu", [("1", "tf32"), ("0", "float32")])
def test_a_users_mlx_enable_tf32_wins_and_is_reported(value, gpu):
    r = _python(MLX_SIDE, {"MLX_ENABLE_TF32": value})
    assert r["on_import"] == value and r["after_flag"] == value and r["after_no_flag"] == value
    assert r["gpu"] == gpu and r["gpu_flag"] == gpu
    assert r["describe_gpu_flag"] == f"{gpu} (MLX_ENABLE_TF32={value}, the user's)"


def test_a_child_process_tells_the_default_from_a_users_value():
    """A process started by one that imported mlx_rnn inherits MLX_ENABLE_TF32=0 with mlx-rnn's mark:
    its own --tf32 still applies (the value is not taken for the user's)."""
    code = ("import os, subprocess, sys, json\nimport mlx_rnn.device\n"
            "child = subprocess.run([sys.executable, '-c', "
            "'import os, json, mlx_rnn.device\\nfrom mlx_rnn import train as mt\\nmt.set_tf32(True)\\n"
            "print(os.environ[\"MLX_ENABLE_TF32\"])'], capture_output=True, text=True, env=dict(os.environ))\n"
            "print('RESULT ' + json.dumps({'parent': os.environ['MLX_ENABLE_TF32'], "
            "'child': child.stdout.strip(), 'err': child.stderr[-300:]}))")
    r = _python(code, {})
    assert r["parent"] == "0" and r["child"] == "1", r["err"]


def test_torch_turns_tf32_off_on_import_and_the_flag_turns_it_on():
    pytest.importorskip("torch")
    code = """
import json, torch
print_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
import torch_ref.device as d
from torch_ref import train as tt
out = {"before": print_before, "after_import": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32],
       "cpu": tt.precision()}
tt.set_tf32(True)
out["flag"] = [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32]
out["cpu_flag"], out["describe_cpu_flag"] = tt.precision(), tt.describe_precision()
d._DEVICE = torch.device("cuda")  # what a CUDA device would report (no GPU needed to read the flags)
out["cuda_flag"], out["describe_cuda_flag"] = tt.precision(), tt.describe_precision()
tt.set_tf32(False)
out["cuda"], out["describe_cuda"] = tt.precision(), tt.describe_precision()
print("RESULT " + json.dumps(out))
"""
    r = _python(code, {})
    assert r["before"][1] is True  # PyTorch's own default for cuDNN: TF32 allowed
    assert r["after_import"] == [False, False] and r["cpu"] == "float32"
    assert r["flag"] == [True, True]
    assert r["cpu_flag"] == "float32" and r["describe_cpu_flag"] == "float32 (TF32 does not apply on the cpu)"
    assert r["cuda_flag"] == "tf32" and r["describe_cuda_flag"] == "tf32 (--tf32)"
    assert r["cuda"] == "float32" and r["describe_cuda"] == "float32"


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
@pytest.mark.parametrize("tf32", [False, True])
def test_trainers_report_the_precision_that_ran(script, tf32, good_data, tmp_path):
    """The run header and the result JSON's config say which precision ran (on the CPU: float32,
    with or without --tf32)."""
    if script == "train_torch":
        pytest.importorskip("torch")
    out = tmp_path / "result.json"
    proc = run_script(script, "--task", "classify", "--epochs", "1", "--data-dir", good_data, *TINY, "--no-save",
                      "--output-json", out, *(["--tf32"] if tf32 else []))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["classify"]
    assert result["config"]["precision"] == "float32"
    header = next(ln for ln in proc.stdout.splitlines() if ln.startswith("[classify]"))
    words = "float32 (TF32 does not apply on the cpu)" if tf32 else "on cpu, float32;"
    assert words in header, header


def test_a_junk_mlx_enable_tf32_is_one_line_exit_2(good_data):
    proc = run_script("train_mlx", "--task", "classify", "--epochs", "1", "--data-dir", good_data, *TINY, "--no-save",
                      env={"MLX_ENABLE_TF32": "yes", "MLX_RNN_TF32_SET": ""})
    assert proc.returncode == 2
    assert "MLX_ENABLE_TF32='yes': expected 0 (full float32) or 1 (TF32 allowed)" in error_line(proc)
