"""No cold start: where the native recurrence serves a CPU run, the trainer's mx.compile
builds no fused kernels (on the CPU MLX writes C++ for each and runs the system compiler at
first use, cached under $TMPDIR/mlx), and the run trains exactly as the fused one;
MLX_RNN_CPU_FUSION=1 brings fusion back, 0 or 1 force it, junk is refused in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

mx = pytest.importorskip("mlx.core")

from mlx_rnn import native, recurrence  # noqa: E402
from tests.synthetic import TINY, error_line, make_data_dir, run_script  # noqa: E402

needs_native = pytest.mark.skipif(not native.available(), reason="native extension not built")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def _train(data: Path, tmp: Path, fusion: str) -> tuple[dict, str, int]:
    """A short classifier run with an empty $TMPDIR: (result, its printed lines, kernel libraries built)."""
    tmpdir = tmp / f"tmp-{fusion}"
    tmpdir.mkdir()
    proc = run_script("train_mlx", "--task", "classify", "--epochs", "2", "--no-save", "--data-dir", data,
                      *[a for a in TINY if a != "--quiet"], cwd=tmp, env={"TMPDIR": str(tmpdir), "MLX_RNN_CPU_FUSION": fusion})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    return result, proc.stdout, len(list((tmpdir / "mlx").rglob("*.so")) if (tmpdir / "mlx").exists() else [])


def _losses(out: str) -> list[float]:
    """The train and val losses of the epoch lines, in order."""
    return [float(v) for pair in re.findall(r"train loss ([0-9.]+)  val loss ([0-9.]+)", out) for v in pair]


@needs_native
def test_default_cpu_run_builds_no_kernels_and_trains_as_the_fused_one(data, tmp_path):
    auto, auto_out, auto_built = _train(data, tmp_path, "auto")
    fused, fused_out, fused_built = _train(data, tmp_path, "1")
    assert auto_built == 0, "the default CPU run compiled fused kernels"
    assert fused_built > 0, "MLX_RNN_CPU_FUSION=1 built no kernel: the check above proves nothing"
    assert "without fused kernels (nothing to build at first use)" in auto_out
    assert "fused kernels built by the system compiler at first use" in fused_out
    assert auto["classify"]["accuracy"] == fused["classify"]["accuracy"]
    a, f = _losses(auto_out), _losses(fused_out)
    assert len(a) == len(f) == 4  # (train, val) x 2 epochs
    assert a == pytest.approx(f, rel=1e-4)  # the lines print 4 decimals


@needs_native
def test_choice_per_path_and_switch(monkeypatch):
    monkeypatch.delenv(native.FUSION_ENV, raising=False)
    with mx.stream(mx.cpu):
        assert native.fusion_wanted(True) is False  # native recurrence on the CPU: nothing to fuse
        assert native.fusion_wanted(False) is True  # the op path's gate math lives on fusion
        monkeypatch.setenv(native.FUSION_ENV, "1")
        assert native.fusion_wanted(True) is True
        monkeypatch.setenv(native.FUSION_ENV, " 0 ")
        assert native.fusion_wanted(False) is False
        assert "nothing to build" in native.describe_fusion(False)
        monkeypatch.setenv(native.FUSION_ENV, "yes")
        with pytest.raises(ValueError, match="MLX_RNN_CPU_FUSION='yes': expected auto"):
            native.fusion_wanted(True)


@needs_native
def test_op_path_keeps_fusion(monkeypatch):
    monkeypatch.delenv(native.FUSION_ENV, raising=False)
    monkeypatch.setenv(recurrence.IMPL_ENV, "op")
    assert recurrence.path_for(mx.float32) == "op"
    assert native.fusion_wanted(recurrence.path_for(mx.float32) == "native") is True


def test_bad_switch_is_one_line_exit_2(data, tmp_path):
    proc = run_script("train_mlx", "--task", "classify", "--epochs", "1", "--no-save", "--data-dir", data,
                      *TINY, cwd=tmp_path, env={"MLX_RNN_CPU_FUSION": "sometimes"})
    assert proc.returncode == 2
    assert "MLX_RNN_CPU_FUSION='sometimes'" in error_line(proc)


@needs_native
def test_scoring_a_saved_model_builds_no_kernels(data, tmp_path):
    """evaluate.py and sample.py on a saved LM, CPU, empty $TMPDIR: nothing built there (mlx.nn's
    log_softmax is an mx.compile'd function that built a kernel per shape, 1.4 s each), so they
    also run where $TMPDIR cannot be written."""
    ckpt = tmp_path / "lm"
    proc = run_script("train_mlx", "--task", "lm", "--epochs", "1", "--save", ckpt, "--data-dir", data, *TINY,
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tmpdir = tmp_path / "tmp-score"
    tmpdir.mkdir()
    for name, args in [("evaluate", ["--data-dir", data]), ("sample", ["--length", "20"])]:
        for where in (tmpdir, tmp_path / "no-such-dir"):
            proc = run_script(name, "--checkpoint", ckpt, *args, "--device", "cpu", cwd=tmp_path,
                              env={"TMPDIR": str(where)})
            assert proc.returncode == 0, (name, where, error_line(proc))
    assert not list(tmpdir.rglob("*")), "scoring wrote (compiled kernels) under $TMPDIR"
