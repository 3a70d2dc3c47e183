"""mlx_rnn.optimizer.AdamW: the fused native update against mlx.optimizers.AdamW."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")
mx = pytest.importorskip("mlx.core")
optim = pytest.importorskip("mlx.optimizers")

from mlx_rnn import native  # noqa: E402
from mlx_rnn.core import switches  # noqa: E402
from mlx_rnn.optimizer import ENV_VAR, AdamW, fused_enabled  # noqa: E402

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native extension: {native.unavailable_reason()}")


def _run(cls, bias_correction, weight_decay, steps=6, compiled=False):
    mx.random.seed(0)
    params = {"w": mx.random.normal((37, 19)), "b": mx.random.normal((19,)), "nested": [mx.random.normal((5,))]}
    opt = cls(learning_rate=lambda s: 1e-2 / (1 + s.astype(mx.float32)), betas=[0.9, 0.99], eps=1e-6,
              weight_decay=weight_decay, bias_correction=bias_correction)
    opt.init(params)

    def update(grads, params):
        return opt.apply_gradients(grads, params)

    if compiled:
        update = mx.compile(update, inputs=opt.state, outputs=opt.state)
    for s in range(steps):
        grads = {"w": mx.sin(params["w"] * (s + 1)), "b": mx.cos(params["b"] + s),
                 "nested": [params["nested"][0] * 0.5]}
        params = update(grads, params)
        mx.eval(params, opt.state)
    return params, opt.state


@pytest.mark.parametrize("bias_correction", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("compiled", [False, True])
def test_fused_adamw_matches_mlx(bias_correction, weight_decay, compiled):
    want, want_state = _run(optim.AdamW, bias_correction, weight_decay, compiled=compiled)
    got, got_state = _run(AdamW, bias_correction, weight_decay, compiled=compiled)
    for k in ("w", "b"):
        np.testing.assert_allclose(np.array(got[k]), np.array(want[k]), rtol=1e-6, atol=1e-7)
        for s in ("m", "v"):
            np.testing.assert_allclose(np.array(got_state[k][s]), np.array(want_state[k][s]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.array(got["nested"][0]), np.array(want["nested"][0]), rtol=1e-6, atol=1e-7)
    assert int(got_state["step"]) == int(want_state["step"]) == 6


def test_fused_adamw_can_be_switched_off(monkeypatch):
    assert fused_enabled()
    monkeypatch.setenv(ENV_VAR, "mlx")
    assert not fused_enabled()
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=ENV_VAR):
        fused_enabled()


def test_fused_adamw_leaves_other_dtypes_to_mlx():
    """float16 parameters take mlx.optimizers' path (the native kernel is float32 only)."""
    p = {"w": mx.ones((4,), dtype=mx.float16)}
    opt = AdamW(learning_rate=0.1, weight_decay=0.0, bias_correction=True)
    opt.init(p)
    out = opt.apply_gradients({"w": mx.ones((4,), dtype=mx.float16)}, p)
    assert out["w"].dtype == mx.float16
    np.testing.assert_allclose(np.array(out["w"]).astype(np.float32), 0.9, rtol=1e-3)


# ----- gradient clipping inside the update (max_grad_norm) -----------------------------------
def _clipped_run(fused: bool, max_norm: float, compiled: bool, steps=4):
    mx.random.seed(1)
    params = {"w": mx.random.normal((300, 70)), "b": mx.random.normal((70,))}
    kw = dict(learning_rate=1e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.1, bias_correction=True)
    opt = AdamW(max_grad_norm=max_norm, **kw) if fused else optim.AdamW(**kw)
    opt.init(params)

    def update(grads, params):
        if not fused and max_norm > 0:
            grads, _ = optim.clip_grad_norm(grads, max_norm)
        return opt.apply_gradients(grads, params)

    if compiled:
        update = mx.compile(update, inputs=opt.state, outputs=opt.state)
    for s in range(steps):
        grads = {"w": mx.sin(params["w"] * (s + 1)) * 3, "b": mx.cos(params["b"] + s)}
        params = update(grads, params)
        mx.eval(params, opt.state)
    return params


@pytest.mark.parametrize("max_norm", [0.0, 1.0, 1e6])
@pytest.mark.parametrize("compiled", [False, True])
def test_clipping_inside_the_update_matches_mlx_clip_grad_norm(max_norm, compiled):
    """AdamW(max_grad_norm=c) == mlx.optimizers.clip_grad_norm(grads, c) then AdamW (c = 1 clips
    every step here, 1e6 never; 0 turns clipping off)."""
    want = _clipped_run(False, max_norm, compiled)
    got = _clipped_run(True, max_norm, compiled)
    for k in want:
        np.testing.assert_allclose(np.array(got[k]), np.array(want[k]), rtol=2e-6, atol=1e-7)


def test_clipping_on_the_mlx_path_too(monkeypatch):
    """With the fused update switched off, max_grad_norm still clips (through mlx)."""
    monkeypatch.setenv(ENV_VAR, "mlx")
    want = _clipped_run(False, 1.0, False)
    got = _clipped_run(True, 1.0, False)
    for k in want:
        np.testing.assert_allclose(np.array(got[k]), np.array(want[k]), rtol=1e-6, atol=1e-8)


def test_max_grad_norm_must_not_be_negative():
    with pytest.raises(ValueError, match="max_grad_norm"):
        AdamW(learning_rate=0.1, max_grad_norm=-1.0)


# ----- the squared norm (sum_squares) ----------------------------------------------------------
def test_sum_squares_is_accurate_and_the_same_for_any_thread_count():
    mx.random.seed(2)
    xs = [mx.random.normal((2048, 512)), mx.random.normal((7,)), mx.random.normal((3, 0)), mx.random.normal((33, 65))]
    want = sum(float((np.array(x, dtype=np.float64) ** 2).sum()) for x in xs)
    ext = native.ext()
    before = ext.get_num_threads()
    try:
        got = []
        for threads in (1, 2, 3):
            ext.set_num_threads(threads)
            got.append(float(ext.sum_squares(xs)))
    finally:
        ext.set_num_threads(before)
    assert got[0] == got[1] == got[2]
    assert abs(got[0] / want - 1) < 1e-6


def test_sum_squares_gradient_is_twice_the_input():
    x, y = mx.random.normal((5, 3)), mx.random.normal((4,))
    gx, gy = mx.grad(lambda a, b: native.ext().sum_squares([a, b]), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(np.array(gx), 2 * np.array(x), rtol=1e-6)
    np.testing.assert_allclose(np.array(gy), 2 * np.array(y), rtol=1e-6)
    # central difference on one element
    eps, idx = 1e-2, (2, 1)
    xp, xm = np.array(x), np.array(x)
    xp[idx] += eps
    xm[idx] -= eps
    f = lambda a: float(native.ext().sum_squares([mx.array(a), y]))  # noqa: E731
    assert abs((f(xp) - f(xm)) / (2 * eps) - float(gx[idx])) < 1e-2


def test_native_threads_follow_the_environment(monkeypatch):
    monkeypatch.setenv(native.THREADS_ENV, "3")
    assert native._default_threads(cpus=4) == 3
    for bad in ("zero", "0", "-2", "2.5", "9" * 5000):
        monkeypatch.setenv(native.THREADS_ENV, bad)
        with pytest.raises(ValueError, match=native.THREADS_ENV):
            native._default_threads(cpus=4)


def test_native_threads_above_the_cpus_are_capped_with_one_warning(monkeypatch):
    lines = []
    monkeypatch.setenv(native.THREADS_ENV, "100000")
    assert native._default_threads(cpus=2, warn=lines.append) == 2
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("warning: ") and f"{native.THREADS_ENV}=100000" in lines[0] and "2 CPUs" in lines[0]
    lines.clear()
    monkeypatch.setenv(native.THREADS_ENV, "2")  # exactly the CPUs: no warning
    assert native._default_threads(cpus=2, warn=lines.append) == 2 and lines == []
    monkeypatch.delenv(native.THREADS_ENV)  # the count taken from the BLAS's variable is capped too
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "16")
    assert native._default_threads(cpus=2, warn=lines.append) == 2
    assert len(lines) == 1 and "OPENBLAS_NUM_THREADS=16" in lines[0]


def test_native_threads_default_to_the_blas_limit_then_the_cpus(monkeypatch):
    monkeypatch.delenv(native.THREADS_ENV, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert native._default_threads() == 1
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert 1 <= native._default_threads() <= native.MAX_DEFAULT_THREADS
    assert native._default_threads(cpus=64) == native.MAX_DEFAULT_THREADS


def test_packed_setting_is_checked(monkeypatch):
    monkeypatch.setenv(native.PACKED_ENV, "0")
    assert switches.read().packed is False
    monkeypatch.setenv(native.PACKED_ENV, "yes")
    with pytest.raises(ValueError, match=native.PACKED_ENV):
        switches.read()


def test_native_thread_count_reaching_the_extension_is_capped():
    """End to end, in a fresh process: 100000 requested, the team gets the usable CPUs, one warning line."""
    code = ("import os, mlx_rnn.native as n; n.available(); "
            "print('RESULT', n.ext().get_num_threads(), len(os.sched_getaffinity(0)) if hasattr(os, "
            "'sched_getaffinity') else os.cpu_count())")
    env = dict(os.environ, **{native.THREADS_ENV: "100000"})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    threads, cpus = map(int, proc.stdout.split("RESULT", 1)[1].split())
    assert threads == cpus
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "MLX_RNN_NUM_THREADS=100000" in warnings[0], proc.stderr
