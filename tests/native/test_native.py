"""The native C++ primitives (mlx_rnn.native): LSTM and GRU recurrences against the op and the
plain autodiff loop, a central-difference check of the primitives themselves, the fallback
(bad input: tests/native/test_native_errors.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")  # first: preloads OpenBLAS before mlx.core
mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")

from mlx_rnn import native  # noqa: E402

from mlx_rnn import recurrence
from mlx_rnn.gru import GRU, gru_loop  # noqa: E402
from mlx_rnn.lstm import LSTM  # noqa: E402
from mlx_rnn.lstm_op import lstm_recurrence, lstm_recurrence_reference  # noqa: E402


def test_extension_is_built_under_ci():
    """CI installs as the README says, which must build the extension: fail loudly if not."""
    if not native.available():
        msg = f"native extension unavailable: {native.unavailable_reason()}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    assert native.ext().built_with_mlx == mx.__version__
    assert recurrence.path_for(mx.float32) == "native"
    assert recurrence.describe().startswith("native")


needs_native = pytest.mark.skipif(not native.available(), reason=f"native extension: {native.unavailable_reason()}")
pytestmark = needs_native


def _rel(a, b) -> float:
    a, b = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _lstm_inputs(B, T, H, seed=0):
    rng = np.random.default_rng(seed)
    xw = rng.standard_normal((B, T, 4 * H))
    h0 = rng.standard_normal((B, H)) * 0.5
    c0 = rng.standard_normal((B, H)) * 0.5
    w = rng.standard_normal((4 * H, H)) * (1.5 / np.sqrt(H))
    return [mx.array(a.astype(np.float32)) for a in (xw, h0, c0, w)]


def _native_exact(xw, h0, c0, w, exact=True):
    return recurrence.lstm_native(xw, h0, c0, w, exact=exact, save=True)


def _weighted_loss(fn, B, T, H, seed=1):
    rng = np.random.default_rng(seed)
    wh, wT, wc = (mx.array(rng.standard_normal(s).astype(np.float32)) for s in ((B, T, H), (B, H), (B, H)))

    def loss(xw, h0, c0, w):
        hs, h_T, c_T = fn(xw, h0, c0, w)
        return (hs * wh).sum() + (h_T * wT).sum() + (c_T * wc).sum()

    return loss


LSTM_SHAPES = [(1, 1, 1), (1, 6, 8), (3, 1, 4), (4, 7, 13), (2, 5, 33), (5, 20, 64)]  # (B, T, H)


@pytest.mark.parametrize("B,T,H", LSTM_SHAPES)
def test_lstm_forward_matches_reference_and_op(B, T, H):
    args = _lstm_inputs(B, T, H, seed=B * 10 + T)
    out = _native_exact(*args)
    ref = lstm_recurrence_reference(*args)
    op = lstm_recurrence(*args, exact=True)
    for o, r, p in zip(out, ref, op):
        assert o.shape == r.shape and o.dtype == mx.float32
        assert float(mx.abs(o - r).max()) <= 1e-6
        assert float(mx.abs(o - p).max()) <= 1e-6


@pytest.mark.parametrize("B,T,H", LSTM_SHAPES)
@pytest.mark.parametrize("compiled", [False, True])
def test_lstm_gradients_match_reference(B, T, H, compiled):
    args = _lstm_inputs(B, T, H, seed=B + T + H)
    grad = mx.grad(_weighted_loss(_native_exact, B, T, H), argnums=(0, 1, 2, 3))
    if compiled:
        grad = mx.compile(grad)
    got = grad(*args)
    want = mx.grad(_weighted_loss(lstm_recurrence_reference, B, T, H), argnums=(0, 1, 2, 3))(*args)
    for g, r, name in zip(got, want, ("xw", "h0", "c0", "w_hh")):
        assert g.shape == r.shape
        assert _rel(g, r) <= 1e-5, name


@pytest.mark.parametrize("B,T,H", [(3, 1, 4), (4, 7, 13), (5, 20, 64)])
@pytest.mark.parametrize("save", [True, False])
def test_lstm_bias_inside_the_primitive(B, T, H, save):
    """bias= adds to xw inside the primitive: the same outputs as adding it first, and its
    gradient is the xw gradient summed over B and T."""
    xw, h0, c0, w = _lstm_inputs(B, T, H, seed=B * T)
    bias = mx.array(np.random.default_rng(5).standard_normal(4 * H).astype(np.float32))
    inside = recurrence.lstm_native(xw, h0, c0, w, exact=True, save=save, bias=bias)
    outside = recurrence.lstm_native(xw + bias, h0, c0, w, exact=True, save=save)
    for a, b in zip(inside, outside):
        assert float(mx.abs(a - b).max()) <= 1e-6
    loss = _weighted_loss(lambda *a: recurrence.lstm_native(*a, exact=True, save=save), B, T, H)
    loss_bias = _weighted_loss(lambda xw_, h0_, c0_, w_: recurrence.lstm_native(
        xw_[0], h0_, c0_, w_, exact=True, save=save, bias=xw_[1]), B, T, H)
    g_in = mx.grad(lambda pair: loss_bias(pair, h0, c0, w))((xw, bias))
    g_out = mx.grad(loss, argnums=0)(xw + bias, h0, c0, w)
    assert _rel(g_in[0], g_out) <= 1e-5
    assert _rel(g_in[1], g_out.sum(axis=(0, 1))) <= 1e-5


def _projected_inputs(B, T, E, H, seed):
    """x (B, T, E), w_ih (4H, E), bias (4H,), h0, c0 (B, H), w_hh (4H, H); the weights drawn with
    standard deviation 1 / sqrt(fan-in), so that pre-activations stay of order 1 for any E and H."""
    rng = np.random.default_rng(seed)
    shapes = [(B, T, E), (4 * H, E), (4 * H,), (B, H), (B, H), (4 * H, H)]
    scales = [1.0, E ** -0.5, 0.5, 0.5, 0.5, H ** -0.5]
    return [mx.array((k * rng.standard_normal(s)).astype(np.float32)) for s, k in zip(shapes, scales)]


def _projection_losses(B, T, H, exact, save, with_bias=True):
    """The same weighted loss with the input projection inside the primitive (w_ih=) and as a
    matmul before it; both take (x, w_ih, bias, h0, c0, w_hh) (bias unused without with_bias)."""
    def inside(x, w_ih, bias, h0, c0, w):
        return recurrence.lstm_native(x, h0, c0, w, exact=exact, save=save, bias=bias if with_bias else None,
                                      w_ih=w_ih)

    def outside(x, w_ih, bias, h0, c0, w):
        xw = (x.reshape(B * T, -1) @ w_ih.T).reshape(B, T, 4 * H)
        return recurrence.lstm_native(xw, h0, c0, w, exact=exact, save=save, bias=bias if with_bias else None)

    def weighted(fn):
        loss = _weighted_loss(lambda xw_, h0_, c0_, w_: fn(*xw_, h0_, c0_, w_), B, T, H)
        return lambda x, w_ih, bias, h0, c0, w: loss((x, w_ih, bias), h0, c0, w)
    return weighted(inside), weighted(outside)


def assert_projection_inside_agrees(B, T, E, H, save, with_bias=True):
    """w_ih= against the projection done outside: outputs within 2e-6 relative, the gradients of all
    inputs (x, w_ih, bias, h0, c0, w_hh) within 1e-5 relative. Returns the outputs and gradients."""
    args = _projected_inputs(B, T, E, H, seed=B + T + E)
    x, w_ih, bias, h0, c0, w = args
    b_in = bias if with_bias else None
    got = recurrence.lstm_native(x, h0, c0, w, exact=True, save=save, bias=b_in, w_ih=w_ih)
    xw = (x.reshape(B * T, E) @ w_ih.T).reshape(B, T, 4 * H)
    want = recurrence.lstm_native(xw, h0, c0, w, exact=True, save=save, bias=b_in)
    for a, b in zip(got, want):  # float32 rounding of values up to a few units (the cell state)
        assert float(mx.abs(a - b).max()) <= 2e-6 * max(1.0, float(mx.abs(b).max()))
    inside, outside = _projection_losses(B, T, H, exact=False, save=save, with_bias=with_bias)
    g_in = mx.grad(inside, argnums=tuple(range(6)))(*args)
    g_out = mx.grad(outside, argnums=tuple(range(6)))(*args)
    for name, a, b in zip(("x", "w_ih", "bias", "h0", "c0", "w_hh"), g_in, g_out):
        assert a.shape == b.shape and _rel(a, b) <= 1e-5, name
    mx.eval(got, g_in)
    return got, g_in


@pytest.mark.parametrize("B,T,E,H,save", [(3, 1, 2, 4, True), (4, 7, 5, 13, False), (6, 20, 32, 40, True),
                                          (2, 5, 300, 33, True)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_lstm_input_projection_inside_the_primitive_blas_path(B, T, E, H, save, with_bias):
    """w_ih= computes x W_ih^T inside the primitive; on the single-thread BLAS path (packed kernels
    off) by one sgemm first: the same outputs and gradients as the projection done outside."""
    ext = native.ext()
    before = ext.packed_gemm_enabled()
    ext.set_packed_gemm(False)
    try:
        assert_projection_inside_agrees(B, T, E, H, save, with_bias)
    finally:
        ext.set_packed_gemm(before)


@pytest.mark.parametrize("idx", [0, 1, 2])
def test_lstm_input_projection_central_difference(idx):
    """The gradients of x, w_ih and bias with the projection inside: a central difference."""
    B, T, E, H = 2, 5, 3, 4
    args = _projected_inputs(B, T, E, H, seed=31)
    inside, _ = _projection_losses(B, T, H, exact=True, save=True)
    numeric, analytic = _central_difference(inside, args, idx)
    assert abs(numeric - analytic) <= 2e-3 * max(1.0, abs(analytic))


def test_lstm_approximate_activations_match_the_op():
    """Training mode: the rational tanh/sigmoid of the native kernels and of the op agree."""
    B, T, H = 4, 25, 32
    args = _lstm_inputs(B, T, H, seed=3)
    nat = recurrence.lstm_native(*args, exact=False)
    op = lstm_recurrence(*args, exact=False)
    for a, b in zip(nat, op):
        assert float(mx.abs(a - b).max()) <= 2e-6
    loss_n = _weighted_loss(lambda *a: recurrence.lstm_native(*a, exact=False), B, T, H)
    loss_o = _weighted_loss(lambda *a: lstm_recurrence(*a, exact=False), B, T, H)
    for g, r in zip(mx.grad(loss_n, argnums=(0, 3))(*args), mx.grad(loss_o, argnums=(0, 3))(*args)):
        assert _rel(g, r) <= 1e-5


def test_lstm_long_sequence_t1000():
    B, T, H = 2, 1000, 16
    args = _lstm_inputs(B, T, H, seed=7)
    out = _native_exact(*args)
    ref = lstm_recurrence_reference(*args)
    for o, r in zip(out, ref):
        assert float(mx.abs(o - r).max()) <= 1e-6
    loss = _weighted_loss(_native_exact, B, T, H)
    got = mx.grad(loss, argnums=(0, 3))(*args)
    want = mx.grad(_weighted_loss(lstm_recurrence_reference, B, T, H), argnums=(0, 3))(*args)
    for g, r in zip(got, want):
        assert _rel(g, r) <= 1e-5


def test_lstm_non_contiguous_inputs():
    B, T, H = 3, 5, 6
    xw, h0, c0, w = _lstm_inputs(B, T, H, seed=11)
    xw_t = mx.array(np.ascontiguousarray(np.array(xw).transpose(1, 0, 2))).transpose(1, 0, 2)  # strided view
    w_t = mx.array(np.ascontiguousarray(np.array(w).T)).T
    h0_b = mx.broadcast_to(h0[:1], (B, H))  # stride-0 rows
    assert float(mx.abs(xw_t - xw).max()) == 0
    out = _native_exact(xw_t, h0_b, c0, w_t)
    ref = lstm_recurrence_reference(xw, mx.array(np.array(h0_b)), c0, w)
    for o, r in zip(out, ref):
        assert float(mx.abs(o - r).max()) <= 1e-6


def test_lstm_without_saved_activations_recomputes_for_the_gradient():
    """save=False (evaluation mode) keeps no activations; a gradient still comes out right."""
    B, T, H = 2, 4, 5
    args = _lstm_inputs(B, T, H, seed=5)

    def fn(xw, h0, c0, w):
        return recurrence.lstm_native(xw, h0, c0, w, exact=True, save=False)

    got = mx.grad(_weighted_loss(fn, B, T, H), argnums=(0, 1, 2, 3))(*args)
    want = mx.grad(_weighted_loss(lstm_recurrence_reference, B, T, H), argnums=(0, 1, 2, 3))(*args)
    for g, r in zip(got, want):
        assert _rel(g, r) <= 1e-5


def _central_difference(loss, args, idx, eps=1e-2, seed=0):
    """d/dt loss(args[idx] + t v) at t = 0 by a central difference, and <grad, v>."""
    rng = np.random.default_rng(seed)
    v = mx.array(rng.standard_normal(args[idx].shape).astype(np.float32))
    plus = list(args)
    minus = list(args)
    plus[idx] = args[idx] + eps * v
    minus[idx] = args[idx] - eps * v
    numeric = (float(loss(*plus)) - float(loss(*minus))) / (2 * eps)
    analytic = float((mx.grad(loss, argnums=idx)(*args) * v).sum())
    return numeric, analytic


@pytest.mark.parametrize("idx", [0, 1, 2, 3])
def test_lstm_primitive_central_difference(idx):
    """The backward primitive is the derivative of the forward primitive (exact activations)."""
    B, T, H = 2, 4, 3
    args = _lstm_inputs(B, T, H, seed=21)
    loss = _weighted_loss(_native_exact, B, T, H)
    numeric, analytic = _central_difference(loss, args, idx)
    assert abs(numeric - analytic) <= 2e-3 * max(1.0, abs(analytic))


# ----- the LSTM module: native against op, 1 and 2 layers, with/without state ------------------
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("with_state", [False, True])
def test_lstm_module_native_matches_op(monkeypatch, layers, with_state):
    B, T, E, H = 3, 6, 5, 9
    mx.random.seed(0)
    lstm = LSTM(E, H, layers)
    x = mx.random.normal((B, T, E))
    state = (mx.random.normal((layers, B, H)), mx.random.normal((layers, B, H))) if with_state else None

    def loss(params, x):
        lstm.update(params)
        out, (h, c) = lstm(x, state)
        return (out * out).sum() + h.sum() + (c * c).sum()

    results = {}
    for impl in ("native", "op", "reference"):
        monkeypatch.setenv(recurrence.IMPL_ENV, impl)
        lstm.eval()  # exact activations: the three paths compute the same function
        val, grads = mx.value_and_grad(loss)(lstm.trainable_parameters(), x)
        results[impl] = (float(val), dict(__import__("mlx.utils").utils.tree_flatten(grads)))
    for impl in ("op", "reference"):
        assert abs(results["native"][0] - results[impl][0]) <= 1e-5 * max(1.0, abs(results[impl][0]))
        for name, g in results[impl][1].items():
            assert _rel(results["native"][1][name], g) <= 1e-5, (impl, name)


def test_lstm_module_under_value_and_grad_and_compile(monkeypatch):
    """nn.value_and_grad inside mx.compile (the trainer's step) gives the op's gradients."""
    B, T, E, H = 4, 8, 6, 10
    mx.random.seed(1)
    model = LSTM(E, H, 2)
    model.eval()
    x = mx.random.normal((B, T, E))

    def loss_fn(x):
        out, _ = model(x)
        return (out ** 2).mean()

    grads = {}
    for impl in ("native", "op"):
        monkeypatch.setenv(recurrence.IMPL_ENV, impl)
        step = mx.compile(nn.value_and_grad(model, loss_fn))
        _, g = step(x)
        grads[impl] = dict(__import__("mlx.utils").utils.tree_flatten(g))
    for name, g in grads["op"].items():
        assert _rel(grads["native"][name], g) <= 1e-5, name


# ----- GRU -------------------------------------------------------------------------------------
def _gru_inputs(B, T, H, seed=0):
    rng = np.random.default_rng(seed)
    xw = rng.standard_normal((B, T, 3 * H))
    w = rng.standard_normal((3 * H, H)) * (1.5 / np.sqrt(H))
    b = rng.standard_normal((3 * H,)) * 0.5
    h0 = rng.standard_normal((B, H)) * 0.5
    return [mx.array(a.astype(np.float32)) for a in (xw, w, b, h0)]


def _gru_loss(fn, B, T, H, seed=2):
    rng = np.random.default_rng(seed)
    wh, wT = (mx.array(rng.standard_normal(s).astype(np.float32)) for s in ((B, T, H), (B, H)))

    def loss(xw, w, b, h0):
        hs, h_T = fn(xw, w, b, h0)
        return (hs * wh).sum() + (h_T * wT).sum()

    return loss


def _gru_native_exact(xw, w, b, h0):
    return recurrence.gru_native(xw, w, b, h0, exact=True, save=True)


@pytest.mark.parametrize("B,T,H", [(1, 1, 1), (3, 1, 4), (4, 7, 13), (2, 30, 33), (2, 1000, 8)])
def test_gru_native_matches_loop(B, T, H):
    args = _gru_inputs(B, T, H, seed=B * 7 + T)
    out = _gru_native_exact(*args)
    ref = gru_loop(*args)
    for o, r in zip(out, ref):
        assert float(mx.abs(o - r).max()) <= 1e-6
    got = mx.grad(_gru_loss(_gru_native_exact, B, T, H), argnums=(0, 1, 2, 3))(*args)
    want = mx.grad(_gru_loss(gru_loop, B, T, H), argnums=(0, 1, 2, 3))(*args)
    for g, r, name in zip(got, want, ("xw", "w_hh", "b_hh", "h0")):
        assert _rel(g, r) <= 1e-5, name


@pytest.mark.parametrize("idx", [0, 1, 2, 3])
def test_gru_primitive_central_difference(idx):
    B, T, H = 2, 4, 3
    args = _gru_inputs(B, T, H, seed=31)
    loss = _gru_loss(_gru_native_exact, B, T, H)
    numeric, analytic = _central_difference(loss, args, idx)
    assert abs(numeric - analytic) <= 2e-3 * max(1.0, abs(analytic))


def test_gru_first_step_without_state_applies_b_hn(monkeypatch):
    """No initial state: the zero state still goes through W_hn h + b_hn at the first step."""
    monkeypatch.setenv(recurrence.IMPL_ENV, "native")
    mx.random.seed(3)
    gru = GRU(4, 5, 1)
    gru.eval()
    x = mx.random.normal((2, 1, 4))
    out, _ = gru(x)
    H = 5
    xw = x[:, 0] @ gru.weight_ih_l0.T + gru.bias_ih_l0
    b = gru.bias_hh_l0
    r = mx.sigmoid(xw[:, :H] + b[:H])
    z = mx.sigmoid(xw[:, H:2 * H] + b[H:2 * H])
    n = mx.tanh(xw[:, 2 * H:] + r * b[2 * H:])
    assert float(mx.abs(out[:, 0] - (1 - z) * n).max()) <= 1e-6


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_module_native_matches_loop(monkeypatch, layers):
    mx.random.seed(4)
    gru = GRU(5, 7, layers)
    gru.eval()
    x = mx.random.normal((3, 6, 5))
    state = (mx.random.normal((layers, 3, 7)),)

    def loss(params):
        gru.update(params)
        out, (h,) = gru(x, state)
        return (out * out).sum() + h.sum()

    res = {}
    for impl in ("native", "op"):
        monkeypatch.setenv(recurrence.IMPL_ENV, impl)
        res[impl] = dict(__import__("mlx.utils").utils.tree_flatten(mx.grad(loss)(gru.trainable_parameters())))
    for name, g in res["op"].items():
        assert _rel(res["native"][name], g) <= 1e-5, name


# ----- selection and the fallback ------------------------------------------------------------
@pytest.mark.parametrize("value", ["turbo", "fast"])  # "fast": an old name of op, no longer taken
def test_unknown_impl_is_refused(monkeypatch, value):
    monkeypatch.setenv(recurrence.IMPL_ENV, value)
    with pytest.raises(ValueError, match="MLX_RNN_LSTM_IMPL"):
        LSTM(2, 3)


def test_fallback_when_the_extension_is_unavailable(monkeypatch):
    """Without the extension the LSTM runs the op, gives the same numbers, and says why."""
    mx.random.seed(5)
    lstm = LSTM(3, 4, 2)
    lstm.eval()
    x = mx.random.normal((2, 5, 3))
    monkeypatch.delenv(recurrence.IMPL_ENV, raising=False)
    native_out, _ = lstm(x)
    monkeypatch.setitem(native._STATE, "ext", None)
    monkeypatch.setitem(native._STATE, "reason", "the extension is not built (test)")
    assert recurrence.path_for(mx.float32) == "op"
    assert recurrence.describe() == "op (Python-level; native unavailable: the extension is not built (test))"
    op_out, _ = lstm(x)
    assert float(mx.abs(native_out - op_out).max()) <= 1e-6
    monkeypatch.setenv(recurrence.IMPL_ENV, "native")
    with pytest.raises(ValueError, match="not built"):
        recurrence.requested()


def test_other_dtypes_take_the_op_path():
    assert recurrence.path_for(mx.float16) == "op"
    assert recurrence.path_for(mx.float32) == "native"


def test_evaluation_activations_are_accurate():
    """Evaluation mode's vectorised tanh/sigmoid (Cephes' tanhf/expf) against float64, over
    -30..30 (one step, W_hh = 0, so each gate is one activation of xw): within 3e-7."""
    H = 4096
    z = np.linspace(-30.0, 30.0, 4 * H).astype(np.float32).reshape(1, 1, 4 * H)
    c0 = np.linspace(-3.0, 3.0, H).astype(np.float32).reshape(1, H)
    xw, w = mx.array(z), mx.zeros((4 * H, H))
    hs, _, c_T = recurrence.lstm_native(xw, mx.zeros((1, H)), mx.array(c0), w, exact=True, save=False)
    z64, c64 = z.astype(np.float64)[0, 0], c0.astype(np.float64)[0]

    def sig(v):
        return 1.0 / (1.0 + np.exp(-v))

    i, f, g, o = sig(z64[:H]), sig(z64[H:2 * H]), np.tanh(z64[2 * H:3 * H]), sig(z64[3 * H:])
    c = f * c64 + i * g
    np.testing.assert_allclose(np.array(c_T)[0], c, atol=3e-7 * 4, rtol=0)
    np.testing.assert_allclose(np.array(hs)[0, 0], o * np.tanh(np.array(c_T, dtype=np.float64)[0]), atol=3e-7, rtol=0)
