"""mlx_rnn.layers.Dropout and Embedding: mlx.nn.Dropout's semantics with native masks on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")
mx = pytest.importorskip("mlx.core")
nn = pytest.importorskip("mlx.nn")

from mlx_rnn import native  # noqa: E402
from mlx_rnn.layers import ENV_VAR, Dropout, native_masks, one_hot_embedding, projection  # noqa: E402

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native extension: {native.unavailable_reason()}")


def test_masks_keep_the_right_fraction_and_scale():
    d = Dropout(0.3)
    x = mx.ones((64, 50, 128))
    y = np.array(d(x))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.005  # 409,600 draws: 6 standard deviations is 0.0043
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)


def test_masks_are_uniform_over_positions_and_independent_between_calls():
    d = Dropout(0.5)
    x = mx.ones((4096, 64))
    a, b = np.array(d(x)) != 0, np.array(d(x)) != 0
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    # no structure along either axis: per-column and per-row rates near 0.5
    assert np.abs(a.mean(axis=0) - 0.5).max() < 0.05
    assert abs(a[:, ::2].mean() - a[:, 1::2].mean()) < 0.01
    # neighbours are uncorrelated
    assert abs(np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]) < 0.01


def test_masks_follow_mlx_random_seed():
    d = Dropout(0.5)
    x = mx.random.normal((8, 9, 10))
    mx.random.seed(7)
    first = [np.array(d(x)) for _ in range(2)]
    mx.random.seed(7)
    again = [np.array(d(x)) for _ in range(2)]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(first[0], first[1])


def test_eval_mode_and_p_zero_are_the_identity():
    x = mx.random.normal((3, 4))
    d = Dropout(0.5)
    d.eval()
    np.testing.assert_array_equal(np.array(d(x)), np.array(x))
    np.testing.assert_array_equal(np.array(Dropout(0.0)(x)), np.array(x))


def test_gradient_is_the_mask_over_the_keep_probability():
    d = Dropout(0.4)
    x = mx.random.normal((16, 32))
    mx.random.seed(3)
    y = np.array(d(x))
    mx.random.seed(3)
    g = np.array(mx.grad(lambda a: (d(a) * 2).sum())(x))
    np.testing.assert_allclose(g, np.where(y != 0, 2 / 0.6, 0.0), rtol=1e-6)


def test_compiled_dropout_advances_the_random_state():
    d = Dropout(0.5)
    state = [mx.random.state]
    f = mx.compile(lambda a: d(a), inputs=state, outputs=state)
    x = mx.ones((32, 32))
    a, b = np.array(f(x)), np.array(f(x))
    assert not np.array_equal(a, b)


def test_switch_to_mlx_dropout(monkeypatch):
    assert native_masks() and one_hot_embedding()
    monkeypatch.setenv(ENV_VAR, "mlx")
    assert not native_masks() and not one_hot_embedding()
    y = np.array(Dropout(0.5)(mx.ones((100, 100))))
    assert set(np.unique(y)) == {0.0, 2.0}
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=ENV_VAR):
        native_masks()


def test_other_dtypes_take_mlx_path():
    y = Dropout(0.5)(mx.ones((50, 50), dtype=mx.float16))
    assert y.dtype == mx.float16
    assert set(np.unique(np.array(y).astype(np.float32))) == {0.0, 2.0}


# ----- Embedding ---------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [27, 300])  # one-hot product, and the gather above ONE_HOT_MAX
def test_embedding_equals_mlx_gather_forward_and_backward(rows):
    from mlx_rnn.layers import Embedding

    emb, ref = Embedding(rows, 16), nn.Embedding(rows, 16)
    ref.weight = emb.weight
    ids = mx.random.randint(0, rows, (6, 9))
    np.testing.assert_array_equal(np.array(emb(ids)), np.array(ref(ids)))
    up = mx.random.normal((6, 9, 16))
    g = mx.grad(lambda w: (w[ids] * up).sum())(emb.weight)
    mine = nn.value_and_grad(emb, lambda i: (emb(i) * up).sum())(ids)[1]["weight"]
    np.testing.assert_allclose(np.array(mine), np.array(g), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("compiled", [False, True])
def test_projection_equals_matmul_forward_and_backward(compiled):
    """projection(x, w) = x @ w.T; its VJP (dy @ w, dy.T @ x) gives MLX's gradients."""
    rng = np.random.default_rng(4)
    x, w, dy = (mx.array(rng.standard_normal(s).astype(np.float32)) for s in ((7, 5), (12, 5), (7, 12)))
    assert np.allclose(np.array(projection(x, w)), np.array(x @ w.T), atol=1e-6)
    grad = mx.grad(lambda x, w: (projection(x, w) * dy).sum(), argnums=(0, 1))
    want = mx.grad(lambda x, w: ((x @ w.T) * dy).sum(), argnums=(0, 1))(x, w)
    got = (mx.compile(grad) if compiled else grad)(x, w)
    for g, r in zip(got, want):
        assert g.shape == r.shape
        assert np.allclose(np.array(g), np.array(r), atol=1e-5)
