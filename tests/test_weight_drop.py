"""Weight drop (DropConnect on weight_hh, --weight-drop) in both frameworks.

The masks come from each framework's own generator, so parity is checked with one fixed
mask put in place of the random one: forward and gradients must then agree to the usual
bars. The random path is checked for what it must do: identity in eval mode, a fresh mask
per call in training, and one mask shared by every time step of a call.
"""

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as mnn
from mlx.utils import tree_flatten

torch = pytest.importorskip("torch")

import torch_ref.models as tmod  # noqa: E402
from mlx_rnn.core.config import make_config  # noqa: E402
from mlx_rnn.models import build_model as build_mlx  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(task, cell, layers, weight_drop=0.5):
    return make_config(task, embed_dim=8, hidden_size=12, num_layers=layers, dropout=0.0, cell=cell, device="cpu",
                       weight_drop=weight_drop)


class FixedMask(mnn.Module):
    """Stands in for the MLX weight dropout: multiplies by a given mask (already scaled)."""

    def __init__(self, masks):
        super().__init__()
        self._masks = list(masks)
        self._i = 0

    def __call__(self, w):
        if not self.training:  # like nn.Dropout
            return w
        m = self._masks[self._i % len(self._masks)]
        self._i += 1
        return w * m


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("task", ["lm", "classify"])
def test_fixed_mask_parity(task, cell, layers, monkeypatch):
    cfg = config(task, cell, layers)
    mx.random.seed(3)
    m = build_mlx(cfg)
    t = tmod.build_model(cfg)
    t.load_numpy(m.weights())
    gates = 4 if cell == "lstm" else 3
    rng = np.random.default_rng(4)
    p = cfg.weight_drop
    masks = [((rng.random((gates * 12, 12)) >= p) / (1 - p)).astype(np.float32) for _ in range(layers)]
    rnn = getattr(m, cell)
    rnn.weight_dropout = FixedMask([mx.array(k) for k in masks])
    calls = iter(range(10 ** 6))
    t_masks = [torch.from_numpy(k) for k in masks]

    def fixed_dropout(w, prob, *a, **k):
        assert prob == p
        return w * t_masks[next(calls) % layers]

    monkeypatch.setattr(tmod, "drop_recurrent_weight", fixed_dropout)
    m.train()
    t.train()
    x = np.random.default_rng(5).integers(0, 27, size=(3, 9)).astype(np.int32)
    if task == "lm":
        y = np.random.default_rng(6).integers(0, 27, size=(3, 9)).astype(np.int32)
        loss_m, gm = mnn.value_and_grad(m, lambda a, b: m.loss(a, b)[0])(mx.array(x), mx.array(y))
        loss_t = t.loss(torch.from_numpy(x).long(), torch.from_numpy(y).long())[0]
    else:
        y = np.array([0, 1, 1], dtype=np.int32)
        loss_m, gm = mnn.value_and_grad(m, m.loss)(mx.array(x), mx.array(y))
        loss_t = t.loss(torch.from_numpy(x).long(), torch.from_numpy(y).long())
    loss_t.backward()
    assert abs(loss_m.item() - loss_t.item()) <= 1e-5 * max(1.0, abs(loss_t.item()))
    gm = dict(tree_flatten(gm))
    for name, param in t.named_parameters():
        g = param.grad.numpy()
        assert np.abs(np.array(gm[name]) - g).max() <= 1e-4 * np.abs(g).max(), name
    # the mask mattered: without it (eval mode) the loss is different
    m.eval()
    plain = (m.loss(mx.array(x), mx.array(y))[0] if task == "lm" else m.loss(mx.array(x), mx.array(y))).item()
    assert abs(plain - loss_m.item()) > 1e-6


@pytest.mark.parametrize("framework", ["mlx", "torch"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_random_mask_behaviour(framework, cell):
    cfg = config("lm", cell, 2, weight_drop=0.5)
    x = np.random.default_rng(7).integers(0, 27, size=(2, 30)).astype(np.int32)
    if framework == "mlx":
        mx.random.seed(8)
        m = build_mlx(cfg)
        ref = build_mlx(cfg.replace(weight_drop=0.0))
        ref.load_numpy(m.weights())

        def run(model, inp):
            return np.array(model(mx.array(inp))[0])
    else:
        torch.manual_seed(8)
        m = tmod.build_model(cfg)
        ref = tmod.build_model(cfg.replace(weight_drop=0.0))
        ref.load_numpy(m.weights())

        def run(model, inp):
            with torch.no_grad():
                return model(torch.from_numpy(inp).long())[0].numpy()
    m.eval()
    ref.eval()
    np.testing.assert_array_equal(run(m, x), run(ref, x))  # eval: no weight drop
    m.train()
    a, b = run(m, x), run(m, x)
    assert np.abs(a - run(ref, x)).max() > 1e-3  # training: the recurrent weights are dropped
    assert np.abs(a - b).max() > 1e-3  # a fresh mask per call
    # one mask for the whole call: the first step does not see weight_hh (zero initial state),
    # so it matches the plain model exactly
    np.testing.assert_allclose(a[:, 0], run(ref, x)[:, 0], atol=1e-6)


@pytest.mark.parametrize("fw", ["mlx", "torch"])
def test_input_dropout_is_its_own_setting(fw):
    """--input-dropout drops the embedding output only; unset, it follows --dropout."""
    x = np.random.default_rng(0).integers(0, 27, (3, 9))

    def two_calls(**kw):
        cfg = config("lm", "lstm", 1, weight_drop=0.0).replace(**kw)
        if fw == "mlx":
            mx.random.seed(0)
            m = build_mlx(cfg)
            m.train()
            return [np.array(m(mx.array(x))[0]) for _ in range(2)], m
        torch.manual_seed(0)
        m = tmod.build_model(cfg)
        m.train()
        with torch.no_grad():
            return [m(torch.from_numpy(x))[0].numpy() for _ in range(2)], m

    (a, b), m = two_calls(dropout=0.0, input_dropout=0.5)
    assert not np.allclose(a, b)  # a fresh mask on the embeddings each call
    (a, b), m = two_calls(dropout=0.0, input_dropout=0.0)
    assert np.array_equal(a, b)
    (a, b), m = two_calls(dropout=0.3, input_dropout=None)
    assert m.input_dropout.p == 0.3 if fw == "torch" else abs(m.input_dropout._p_1 - 0.7) < 1e-9
