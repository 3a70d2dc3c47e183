"""mlx_rnn.lstm_op: the custom-VJP LSTM recurrence against MLX autodiff of the plain loop."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")  # first: preloads OpenBLAS before mlx.core
mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")
optim = pytest.importorskip("mlx.optimizers")

from mlx_rnn import lstm_op  # noqa: E402
from mlx_rnn.lstm_op import lstm_recurrence, lstm_recurrence_reference  # noqa: E402

SHAPES = [(1, 1, 1), (3, 1, 4), (2, 5, 8), (4, 7, 16), (5, 3, 33)]  # (B, T, H)


def _inputs(B, T, H, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    xw = rng.standard_normal((B, T, 4 * H)) * scale
    h0 = rng.standard_normal((B, H)) * 0.5
    c0 = rng.standard_normal((B, H)) * 0.5
    w = rng.standard_normal((4 * H, H)) * (1.5 / np.sqrt(H))
    return [mx.array(a.astype(np.float32)) for a in (xw, h0, c0, w)]


def _rel(a, b):
    a, b = np.array(a), np.array(b)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


@pytest.mark.parametrize("B,T,H", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 6.0])
def test_forward_matches_reference(B, T, H, scale):
    args = _inputs(B, T, H, seed=B * 100 + T, scale=scale)
    out = lstm_recurrence(*args)
    ref = lstm_recurrence_reference(*args)
    assert out[0].shape == (B, T, H) and out[1].shape == (B, H) and out[2].shape == (B, H)
    for o, r in zip(out, ref):
        assert o.dtype == mx.float32
        np.testing.assert_allclose(np.array(o), np.array(r), atol=1e-5, rtol=0)


def _loss(fn, which, weights):
    wh, wT, wc = weights

    def loss(xw, h0, c0, w):
        hs, h_T, c_T = fn(xw, h0, c0, w)
        total = mx.array(0.0)
        if "hs" in which:
            total = total + (hs * wh).sum()
        if "h_T" in which:
            total = total + (h_T * wT).sum()
        if "c_T" in which:
            total = total + (c_T * wc).sum()
        return total

    return loss


def _weights(B, T, H, seed=7):
    rng = np.random.default_rng(seed)
    return [mx.array(rng.standard_normal(s).astype(np.float32)) for s in ((B, T, H), (B, H), (B, H))]


@pytest.mark.parametrize("B,T,H", SHAPES)
@pytest.mark.parametrize("which", [("hs", "h_T", "c_T"), ("h_T",), ("hs",), ("c_T",)])
def test_gradients_match_autodiff(B, T, H, which):
    args = _inputs(B, T, H, seed=B + T + H, scale=2.0)
    weights = _weights(B, T, H)
    argnums = (0, 1, 2, 3)
    g = mx.grad(_loss(lstm_recurrence, which, weights), argnums=argnums)(*args)
    r = mx.grad(_loss(lstm_recurrence_reference, which, weights), argnums=argnums)(*args)
    for name, gi, ri in zip(("xw", "h0", "c0", "w_hh"), g, r):
        assert gi.shape == ri.shape, name
        assert _rel(gi, ri) < 1e-4, (name, _rel(gi, ri))


def test_value_and_grad_and_compile_agree():
    B, T, H = 4, 6, 8
    args = _inputs(B, T, H, seed=3)
    weights = _weights(B, T, H)
    loss = _loss(lstm_recurrence, ("hs", "h_T"), weights)
    vg = mx.value_and_grad(loss, argnums=(0, 1, 2, 3))
    v_eager, g_eager = vg(*args)
    v_comp, g_comp = mx.compile(vg)(*args)
    v_ref, g_ref = mx.value_and_grad(
        _loss(lstm_recurrence_reference, ("hs", "h_T"), weights), argnums=(0, 1, 2, 3)
    )(*args)
    assert abs(v_eager.item() - v_ref.item()) < 1e-4 * max(1.0, abs(v_ref.item()))
    assert abs(v_comp.item() - v_eager.item()) < 1e-5 * max(1.0, abs(v_eager.item()))
    for a, b, c in zip(g_eager, g_comp, g_ref):
        assert _rel(b, a) < 1e-5
        assert _rel(a, c) < 1e-4


class _TinyLSTM(nn.Module):
    """embedding-free one-layer LSTM + linear head, PyTorch parameter layout."""

    def __init__(self, E, H, use_op=True):
        super().__init__()
        k = 1.0 / np.sqrt(H)
        self.weight_ih = mx.random.uniform(-k, k, (4 * H, E))
        self.weight_hh = mx.random.uniform(-k, k, (4 * H, H))
        self.bias = mx.random.uniform(-k, k, (4 * H,))
        self.out = nn.Linear(H, 1)
        self.H = H
        self._fn = lstm_recurrence if use_op else lstm_recurrence_reference

    def __call__(self, x):
        B = x.shape[0]
        xw = x @ self.weight_ih.T + self.bias
        z = mx.zeros((B, self.H))
        hs, h_T, _ = self._fn(xw, z, z, self.weight_hh)
        return self.out(h_T).squeeze(-1) + 0.1 * self.out(hs).mean(axis=(1, 2))


def _train(use_op, compiled, steps=3):
    mx.random.seed(11)
    model = _TinyLSTM(5, 12, use_op=use_op)
    opt = optim.Adam(learning_rate=1e-2, bias_correction=True)
    rng = np.random.default_rng(5)
    x = mx.array(rng.standard_normal((6, 9, 5)).astype(np.float32))
    y = mx.array((rng.random(6) > 0.5).astype(np.float32))

    def loss_fn(model, x, y):
        return nn.losses.binary_cross_entropy(model(x), y, with_logits=True).mean()

    vg = nn.value_and_grad(model, loss_fn)

    def step(x, y):
        loss, grads = vg(model, x, y)
        opt.update(model, grads)
        return loss

    if compiled:
        state = [model.state, opt.state]
        step = mx.compile(step, inputs=state, outputs=state)
    losses = []
    for _ in range(steps):
        loss = step(x, y)
        mx.eval(model.parameters(), opt.state, loss)
        losses.append(loss.item())
    return losses, model.parameters()


def test_whole_training_step_compiles():
    losses_c, params_c = _train(use_op=True, compiled=True)
    losses_e, params_e = _train(use_op=True, compiled=False)
    losses_r, params_r = _train(use_op=False, compiled=False)
    assert all(np.isfinite(losses_c))
    np.testing.assert_allclose(losses_c, losses_r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(losses_e, losses_r, rtol=1e-4, atol=1e-5)
    for key in ("weight_hh", "weight_ih", "bias"):
        np.testing.assert_allclose(np.array(params_c[key]), np.array(params_r[key]), atol=1e-4)


def test_exact_activation_mode(monkeypatch):
    monkeypatch.setenv("MLX_RNN_LSTM_ACT", "exact")
    args = _inputs(3, 4, 8, seed=9, scale=3.0)
    out = lstm_recurrence(*args)
    ref = lstm_recurrence_reference(*args)
    for o, r in zip(out, ref):
        np.testing.assert_allclose(np.array(o), np.array(r), atol=2e-6, rtol=0)


def test_exact_flag_overrides_the_approximation(monkeypatch):
    monkeypatch.setenv("MLX_RNN_LSTM_ACT", "approx")
    args = _inputs(3, 6, 16, seed=11, scale=3.0)
    ref = lstm_recurrence_reference(*args)
    exact = lstm_recurrence(*args, exact=True)
    approx = lstm_recurrence(*args)
    for o, r in zip(exact, ref):
        np.testing.assert_allclose(np.array(o), np.array(r), atol=2e-6, rtol=0)
    assert not np.array_equal(np.array(approx[0]), np.array(exact[0]))  # the flag changed the path


def test_lstm_module_is_exact_in_eval_mode(monkeypatch):
    """Training may use the approximate activations; scoring (eval mode) must not."""
    from mlx_rnn.lstm import LSTM
    monkeypatch.setenv("MLX_RNN_LSTM_ACT", "approx")
    mx.random.seed(3)
    lstm = LSTM(8, 16, num_layers=2)
    x = mx.random.normal((3, 140, 8)) * 2  # 140 > CHUNK (128) steps: the chunked path too
    lstm.eval()
    out_eval, _ = lstm(x)
    lstm.train()
    out_train, _ = lstm(x)  # no dropout configured: differs only by the activations
    monkeypatch.setenv("MLX_RNN_LSTM_IMPL", "reference")
    ref_lstm = LSTM(8, 16, num_layers=2)
    ref_lstm.update(lstm.parameters())
    ref_lstm.eval()
    out_ref, _ = ref_lstm(x)
    np.testing.assert_allclose(np.array(out_eval), np.array(out_ref), atol=2e-6, rtol=0)
    assert not np.array_equal(np.array(out_train), np.array(out_eval))


def test_float16_falls_back_to_exact():
    args = [a.astype(mx.float16) for a in _inputs(2, 3, 8, seed=1)]
    out = lstm_recurrence(*args)
    ref = lstm_recurrence_reference(*args)
    assert out[0].dtype == mx.float16
    np.testing.assert_allclose(np.array(out[0]), np.array(ref[0]), atol=1e-2)


def test_approximate_activations_error_bound():
    xs = np.concatenate([np.linspace(-30, 30, 200001), np.geomspace(1e-6, 1e30, 400)])
    xs = np.concatenate([xs, -xs]).astype(np.float32)
    x = mx.array(xs)
    t = np.array(mx.compile(lstm_op._tanh_approx)(mx.clip(x, -1e6, 1e6)))
    def sigmoid_approx(v):  # sigmoid(v) = (1 + tanh(v / 2)) / 2, as the gates compute it
        return 0.5 * lstm_op._tanh_approx(0.5 * v) + 0.5

    s = np.array(mx.compile(sigmoid_approx)(mx.clip(x, -1e6, 1e6)))
    x64 = np.clip(xs.astype(np.float64), -1e6, 1e6)
    assert np.max(np.abs(t - np.tanh(x64))) < 6e-7
    assert np.max(np.abs(s - 0.5 * (1 + np.tanh(x64 / 2)))) < 4e-7


def test_bad_shapes_raise():
    xw, h0, c0, w = _inputs(2, 3, 4)
    with pytest.raises(ValueError):
        lstm_recurrence(xw[:, :, :-1], h0, c0, w)
    with pytest.raises(ValueError):
        lstm_recurrence(xw, h0, c0[:1], w)
    with pytest.raises(ValueError):
        lstm_recurrence(xw[0], h0, c0, w)


def test_unknown_activation_mode_is_refused(monkeypatch):
    """MLX_RNN_LSTM_ACT other than auto / exact / approx: a ValueError naming it, before training."""
    from mlx_rnn import recurrence

    monkeypatch.setenv("MLX_RNN_LSTM_ACT", "bogus")
    with pytest.raises(ValueError, match="MLX_RNN_LSTM_ACT='bogus'"):
        recurrence.requested()
