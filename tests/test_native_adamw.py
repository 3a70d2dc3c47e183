"""mlx_rnn.optimizer.AdamW: the fused native update against mlx.optimizers.AdamW."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")
mx = pytest.importorskip("mlx.core")
optim = pytest.importorskip("mlx.optimizers")

from mlx_rnn import native  # noqa: E402
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
