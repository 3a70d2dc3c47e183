"""GRU parity with torch.nn.GRU: forward, state, gradients, training, and b_hn at the first step."""

import numpy as np
import pytest

import mlx.core as mx
import mlx.nn as nn

torch = pytest.importorskip("torch")

from mlx_rnn.core.config import make_config  # noqa: E402
from mlx_rnn.gru import GRU  # noqa: E402
from mlx_rnn.models import build_model as build_mlx  # noqa: E402

from torch_ref.models import build_model as build_torch  # noqa: E402


def config(task, layers):
    return make_config(task, embed_dim=8, hidden_size=12, num_layers=layers, dropout=0.0, cell="gru", device="cpu",
                       batch_size=4, seq_len=20 if task == "classify" else 10, epochs=1, lr=3e-3)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("given_state", [False, True])
def test_gru_forward_matches_torch(layers, given_state):
    mx.random.seed(layers)
    g = GRU(5, 7, layers)
    t = torch.nn.GRU(5, 7, layers, batch_first=True)
    t.load_state_dict({k: torch.tensor(np.array(v)) for k, v in
                       __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(g.parameters())})
    x = np.random.default_rng(0).standard_normal((3, 6, 5)).astype(np.float32)
    h0 = np.random.default_rng(1).standard_normal((layers, 3, 7)).astype(np.float32) if given_state else None
    out, (h,) = g(mx.array(x), None if h0 is None else (mx.array(h0),))
    t_out, t_h = t(torch.tensor(x), None if h0 is None else torch.tensor(h0))
    assert np.abs(np.array(out) - t_out.detach().numpy()).max() <= 1e-5
    assert np.abs(np.array(h) - t_h.detach().numpy()).max() <= 1e-5


def test_first_step_without_state_applies_b_hn():
    """With zero weights, h1 = (1 - z) * tanh(b_in + r * b_hn): b_hn must count at step one."""
    g = GRU(2, 3)
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0"):
        setattr(g, name, mx.zeros_like(getattr(g, name)))
    b_hh = np.zeros(9, dtype=np.float32)
    b_hh[6:] = 2.0  # b_hn only
    g.bias_hh_l0 = mx.array(b_hh)
    out, _ = g(mx.zeros((1, 1, 2)))
    r = z = 0.5  # sigmoid(0)
    want = (1 - z) * np.tanh(r * 2.0)
    assert np.allclose(np.array(out)[0, 0], want, atol=1e-6)


@pytest.mark.parametrize("task", ["classify", "lm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_gru_model_logits_and_gradients_match(task, layers):
    cfg = config(task, layers)
    mx.random.seed(0)
    m = build_mlx(cfg)
    t = build_torch(cfg)
    t.load_numpy(m.weights())
    rng = np.random.default_rng(2)
    x = rng.integers(0, 27, (4, 10))
    if task == "classify":
        y = rng.integers(0, 2, (4,))
        loss_m, grads = nn.value_and_grad(m, m.loss)(mx.array(x), mx.array(y))
        loss_t = t.loss(torch.tensor(x), torch.tensor(y))
    else:
        y = rng.integers(0, 27, (4, 10))
        loss_m, grads = nn.value_and_grad(m, lambda a, b: m.loss(a, b)[0])(mx.array(x), mx.array(y))
        loss_t = t.loss(torch.tensor(x), torch.tensor(y))[0]
    loss_t.backward()
    assert abs(float(loss_m) - float(loss_t.detach())) < 1e-5
    flat = dict(__import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(grads))
    for name, p in t.named_parameters():
        ref = p.grad.numpy()
        assert np.abs(np.array(flat[name]) - ref).max() <= 1e-4 * max(np.abs(ref).max(), 1e-12), name


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_gru_adam_trainers_agree_for_20_steps(task):
    from mlx_rnn.train import Trainer as MLXTrainer
    from torch_ref.train import Trainer as TorchTrainer

    cfg = config(task, 2)
    rng = np.random.default_rng(3)
    if task == "classify":
        data = (rng.integers(0, 27, (80, 20)).astype(np.int32), rng.integers(0, 2, 80).astype(np.int32))
        cfg = cfg.replace(batch_size=4)
    else:
        data = rng.integers(0, 27, 1000).astype(np.int32)
    a, b = MLXTrainer(cfg, data), TorchTrainer(cfg, data)
    b.load_weights(a.weights())
    stop_after = lambda n: (lambda c=[0]: (c.__setitem__(0, c[0] + 1), c[0] >= n)[1])  # noqa: E731
    ra = a.train_epoch(0, should_stop=stop_after(20))
    rb = b.train_epoch(0, should_stop=stop_after(20))
    assert ra.steps == rb.steps == min(20, a.steps_per_epoch)
    assert abs(ra.mean_loss - rb.mean_loss) < 1e-4
    wa, wb = a.weights(), b.weights()
    for name in wb:
        assert np.abs(wa[name] - wb[name]).max() <= 1e-4, name
