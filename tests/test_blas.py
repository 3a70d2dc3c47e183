"""mlx_rnn._blas: the OpenBLAS preload really reaches libmlx.so, and the opt-out works.

Each check runs in a fresh interpreter (the preload is once per process and
must happen before mlx.core is imported).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

# Do not import mlx.core here: that would make the preload "too late" for
# every other test in this pytest process.
if importlib.util.find_spec("mlx") is None:
    pytest.skip("mlx is not installed", allow_module_level=True)

LINUX = sys.platform.startswith("linux")
OPENBLAS_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)


def _have_openblas() -> bool:
    import ctypes.util

    return any(os.path.exists(p) for p in OPENBLAS_PATHS) or bool(
        ctypes.util.find_library("openblas")
    )


def _require_openblas() -> None:
    if not LINUX:
        pytest.skip("the BLAS preload is Linux-only (macOS uses Accelerate)")
    if not _have_openblas():
        if os.environ.get("CI") == "true":
            pytest.fail("libopenblas is not installed, but CI installs libopenblas0-pthread")
        pytest.skip("libopenblas not installed (apt-get install libopenblas0-pthread)")


CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import mlx_rnn._blas as blas
    import mlx.core as mx
    info = blas.blas_info()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((67, 129)).astype(np.float32)
    b = rng.standard_normal((129, 45)).astype(np.float32)
    c = np.array(mx.matmul(mx.array(a), mx.array(b), stream=mx.cpu))
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = float(np.max(np.abs(c - ref)) / np.max(np.abs(ref)))
    out = {"info": info, "describe": blas.describe(info), "matmul_rel_err": err}
    if "--torch" in sys.argv:
        import torch
        t = (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()
        out["torch_rel_err"] = float(np.max(np.abs(t - ref)) / np.max(np.abs(ref)))
        out["numpy_rel_err"] = float(np.max(np.abs(a @ b - ref)) / np.max(np.abs(ref)))
    print("RESULT " + json.dumps(out))
    """
)


def _run(env_value: str | None, *args: str) -> dict:
    env = dict(os.environ)
    env.pop("MLX_RNN_BLAS", None)
    if env_value is not None:
        env["MLX_RNN_BLAS"] = env_value
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def test_openblas_is_what_mlx_uses():
    _require_openblas()
    out = _run(None)
    info = out["info"]
    assert info["preloaded"] is True, info
    assert info["name"] == "openblas", info
    assert info["method"] in ("got", "lookup")
    assert "OpenBLAS" in out["describe"]
    assert out["matmul_rel_err"] < 1e-5


def test_reference_opt_out_keeps_reference_blas():
    if not LINUX:
        pytest.skip("the reference BLAS is what the Linux wheel links")
    out = _run("reference")
    info = out["info"]
    assert info["preloaded"] is False
    assert info["name"] == "reference", info
    assert "reference BLAS" in out["describe"]
    assert out["matmul_rel_err"] < 1e-5


def test_numpy_and_torch_still_work_after_preload():
    _require_openblas()
    pytest.importorskip("torch")
    out = _run(None, "--torch")
    assert out["info"]["name"] == "openblas"
    assert out["torch_rel_err"] < 1e-5
    assert out["numpy_rel_err"] < 1e-5
    assert out["matmul_rel_err"] < 1e-5


def test_too_late_is_reported():
    if not LINUX:
        pytest.skip("Linux-only")
    code = (
        "import json, mlx.core, mlx_rnn._blas as b; "
        "print('RESULT ' + json.dumps(b.preload()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert st["preloaded"] is False
    assert st["reason"].startswith("too late")


def test_import_is_safe_and_idempotent():
    from mlx_rnn import _blas as blas

    a = blas.preload()
    b = blas.preload()
    assert a == b
    assert set(a) >= {"preloaded", "library", "reason"}
    assert isinstance(blas.describe(), str)


THREAD_TIMEOUT_CHILD = textwrap.dedent(
    """
    import importlib, json, os
    preload = importlib.import_module("mlx_rnn._blas.preload")  # the module (the package re-exports a function of that name)
    seen = {}
    real = preload._try_load
    def spy(name):
        seen.setdefault("during_load", os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
        return real(name)
    preload._try_load = spy
    preload._load_with_timeout("libopenblas.so.0")
    seen["after_load"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    print(json.dumps(seen))
    """
)


@pytest.mark.parametrize("user_value", [None, "12"])
def test_openblas_thread_timeout_is_set_only_while_loading(user_value):
    """OpenBLAS reads OPENBLAS_THREAD_TIMEOUT when it loads: the preload sets 4 then (its idle
    threads sleep at once, docs/native.md) unless the user chose a value, and removes its own
    value afterwards, so child processes see the user's environment."""
    _require_openblas()
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if user_value is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = user_value
    out = subprocess.run([sys.executable, "-c", THREAD_TIMEOUT_CHILD], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["during_load"] == (user_value or "4")
    assert seen["after_load"] == user_value


@pytest.mark.parametrize("value", ["/etc/passwd", "/nonexistent/libblas.so", "libc.so.6"])
def test_a_library_that_is_not_a_blas_is_refused(value):
    """No silent fall-back to the reference BLAS: importing mlx_rnn.device refuses the value,
    naming the variable and the value, in one line; every later attempt refuses it again."""
    if not LINUX:
        pytest.skip("MLX_RNN_BLAS is read on Linux only")
    code = textwrap.dedent(
        """
        import json
        for attempt in range(2):
            try:
                import mlx_rnn.device
            except ValueError as e:
                print("REFUSED " + json.dumps(str(e)))
            else:
                print("LOADED")
        """
    )
    env = dict(os.environ, MLX_RNN_BLAS=value)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(ln.startswith("REFUSED ") for ln in lines), proc.stdout
    message = json.loads(lines[0][len("REFUSED "):])
    assert "\n" not in message
    assert f"MLX_RNN_BLAS={value!r}" in message and "cblas_sgemm" in message


def test_a_refused_blas_ends_a_trainer_with_one_line_and_exit_2(good_data):
    if not LINUX:
        pytest.skip("MLX_RNN_BLAS is read on Linux only")
    env = dict(os.environ, MLX_RNN_BLAS="/etc/passwd")
    proc = subprocess.run([sys.executable, "scripts/train_mlx.py", "--task", "classify", "--epochs", "1",
                           "--data-dir", str(good_data)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: MLX_RNN_BLAS='/etc/passwd'"), proc.stderr
    assert "Traceback" not in proc.stderr
