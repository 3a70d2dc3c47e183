"""MLX vs PyTorch parity of training: gradients (and the classifier's prefix loss), 20 plain SGD
steps, and the real Trainers (AdamW, clipping, warm-up, schedules) from the same weights.

Float32, on the device pairs of parity_helpers.py (CPU against CPU, each accelerator against the
other framework's CPU). Bars: gradients per tensor max |diff| <= 1e-4 * max |torch grad|;
parameters after 20 SGD or Adam steps within 1e-4; losses within 1e-5 relative. The forward
passes, metrics, initialisation and checkpoints are in test_parity.py.
"""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

import mlx.nn as mnn  # noqa: E402
import mlx.optimizers as mopt  # noqa: E402

from mlx_rnn import train as mt  # noqa: E402
from mlx_rnn.core.vocab import TEXT8, TEXT8_SYMBOLS  # noqa: E402
from tests.parity_helpers import devices  # noqa: E402,F401  (the fixture, for pytest)
from tests.parity_helpers import (PARAM_TOL, grad_bound, TASKS, assert_params_close,  # noqa: E402
                                  make_config, max_abs_diff, mlx_model, rand_ids, rand_state, synthetic_train,
                                  to_torch, torch_twin)
from torch_ref import train as tt  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----- gradients ------------------------------------------------------------------------------
def _mlx_grads(m, task, x, y, state):
    """(loss, {name: grad}, (dh0, dc0) or None) with MLX autodiff through the custom VJP."""
    xm, ym = mx.array(x), mx.array(y)
    if state is None:
        loss_fn = m.loss  # classifier: loss; LM: (loss, state), the first output is differentiated
        loss, grads = mnn.value_and_grad(m, loss_fn)(xm, ym)
        if task == "lm":
            loss = loss[0]
        return float(loss.item()), dict(_flatten(grads)), None
    h0, c0 = mx.array(state[0]), mx.array(state[1])

    def loss_with_state(xx, yy, h, c):
        if task == "lm":
            return m.loss(xx, yy, (h, c))[0]
        out, _ = m.lstm(m.embedding(xx), (h, c))
        logits = m.output(out[:, -1, :]).squeeze(-1)
        return mnn.losses.binary_cross_entropy(logits, yy.astype(mx.float32), with_logits=True, reduction="mean")

    loss, grads = mnn.value_and_grad(m, loss_with_state)(xm, ym, h0, c0)
    dh0, dc0 = mx.grad(loss_with_state, argnums=(2, 3))(xm, ym, h0, c0)
    return float(loss.item()), dict(_flatten(grads)), (np.array(dh0), np.array(dc0))


def _flatten(tree):
    from mlx.utils import tree_flatten

    return [(k, np.array(v)) for k, v in tree_flatten(tree)]


def _torch_grads(t, task, x, y, state):
    import torch.nn.functional as F

    dev = t.device
    xt, yt = to_torch(x, dev, long=True), to_torch(y, dev, long=True)
    t.zero_grad(set_to_none=True)
    if state is None:
        loss = t.loss(xt, yt)
        if task == "lm":
            loss = loss[0]
        loss.backward()
        st = None
    else:
        h0 = to_torch(state[0], dev).requires_grad_(True)
        c0 = to_torch(state[1], dev).requires_grad_(True)
        if task == "lm":
            loss = t.loss(xt, yt, (h0, c0))[0]
        else:
            out, _ = t.lstm(t.embedding(xt), (h0, c0))
            loss = F.binary_cross_entropy_with_logits(t.output(out[:, -1, :]).squeeze(-1), yt.float())
        loss.backward()
        st = (h0.grad.cpu().numpy(), c0.grad.cpu().numpy())
    grads = {k: p.grad.cpu().numpy() for k, p in t.named_parameters()}
    return float(loss.item()), grads, st


@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("task", TASKS)
def test_gradients(task, num_layers, with_state, devices):
    """d loss / d parameter (and d loss / d (h0, c0)): per tensor max |diff| <= 1e-4 * max |torch grad|
    + 1e-6 (parity_helpers.grad_bound)."""
    cfg = make_config(task, num_layers)
    m = mlx_model(cfg, seed=11)
    t = torch_twin(m.weights(), cfg, devices.torch)
    m.train()
    t.train()
    B, T = 4, cfg.seq_len
    x = rand_ids((B, T), seed=12)
    y = rand_ids((B,), seed=13) % 2 if task == "classify" else rand_ids((B, T), seed=13)
    state = rand_state(cfg, B, seed=14) if with_state else None
    loss_m, gm, sm = _mlx_grads(m, task, x, y, state)
    loss_t, gt, st = _torch_grads(t, task, x, y, state)
    assert abs(loss_m - loss_t) <= 1e-5 * max(1.0, abs(loss_t))
    assert set(gm) == set(gt)
    for name in gt:
        scale = float(np.max(np.abs(gt[name])))
        assert scale > 0, f"{name}: zero gradient in torch (test too weak)"
        diff = max_abs_diff(gm[name], gt[name])
        assert diff <= grad_bound(gt[name]), f"{name}: max |grad diff| {diff:.3e} > 1e-4 * {scale:.3e} + 1e-6"
    if state is not None:
        for what, a, b in (("h0", sm[0], st[0]), ("c0", sm[1], st[1])):
            assert max_abs_diff(a, b) <= grad_bound(b), f"d loss / d {what}"


@pytest.mark.parametrize("num_layers", [1, 2])
def test_prefix_loss_and_gradients(num_layers, devices):
    """The classifier's prefix loss (batching.prefix_labels, weight 0.7): the loss equals a numpy
    computation from prefix_logits, prefix_logits' last column is model(x), and loss and
    gradients agree across frameworks (same bars as test_gradients). Both models train with
    dropout 0, so training mode (which cuDNN's RNN backward needs) computes what eval mode does."""
    from mlx_rnn.core.batching import prefix_labels

    cfg = make_config("classify", num_layers, dropout=0.0, input_dropout=0.0)
    m = mlx_model(cfg, seed=31)
    t = torch_twin(m.weights(), cfg, devices.torch)
    B, T, w = 6, cfg.seq_len, 0.7
    x = rand_ids((B, T), seed=32)
    x[:, 5] = TEXT8.encode(" ")[0]  # some ignored (space) positions for sure
    y = rand_ids((B,), seed=33) % 2
    py = prefix_labels(x, TEXT8_SYMBOLS)
    assert set(np.unique(py)) == {-1.0, 0.0, 1.0}
    m.eval()
    pl = np.array(m.prefix_logits(mx.array(x)))
    assert pl.shape == (B, T)
    np.testing.assert_allclose(pl[:, -1], np.array(m(mx.array(x))), atol=1e-6)

    def bce(z, target):
        return np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))

    known = py >= 0
    expect = bce(pl[:, -1], y).mean() + w * np.where(known, bce(pl[:, :-1], np.maximum(py, 0)), 0).sum() / py.size
    loss_m, grads = mnn.value_and_grad(m, lambda a, b, c: m.loss(a, b, c, w))(mx.array(x), mx.array(y), mx.array(py))
    assert abs(loss_m.item() - expect) <= 1e-5
    gm = dict(_flatten(grads))
    t.train()  # cuDNN's RNN backward runs in training mode only; dropout 0 makes it the same function
    t.zero_grad(set_to_none=True)
    loss_t = t.loss(to_torch(x, devices.torch, True), to_torch(y, devices.torch, True), to_torch(py, devices.torch), w)
    loss_t.backward()
    assert abs(loss_m.item() - loss_t.item()) <= 1e-5 * max(1.0, abs(loss_t.item()))
    for name, p in t.named_parameters():
        g = p.grad.cpu().numpy()
        scale = float(np.max(np.abs(g)))
        assert scale > 0, f"{name}: zero gradient in torch (test too weak)"
        assert max_abs_diff(gm[name], g) <= grad_bound(g), name
    # the prefix term matters: weight 0 gives the plain final-label loss
    plain = m.loss(mx.array(x), mx.array(y), mx.array(py), 0.0).item()
    assert abs(plain - bce(pl[:, -1], y).mean()) <= 1e-5 and abs(plain - loss_m.item()) > 1e-3


# ----- training: 20 SGD steps (plain loops) -----------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_sgd_20_steps(task, devices):
    """Same initial weights, same batches, 20 plain SGD steps: every parameter within 1e-4.

    The LM carries its state from batch to batch (truncated BPTT), as the trainers do.
    """
    steps, lr = 20, 0.2
    cfg = make_config(task, 2)
    m = mlx_model(cfg, seed=21)
    t = torch_twin(m.weights(), cfg, devices.torch)
    m.train()
    t.train()
    B, T = 4, cfg.seq_len
    batches = [(rand_ids((B, T), 100 + k),
                rand_ids((B,), 200 + k) % 2 if task == "classify" else rand_ids((B, T), 200 + k))
               for k in range(steps)]
    # MLX
    opt_m = mopt.SGD(learning_rate=lr)
    if task == "classify":
        step_m = mnn.value_and_grad(m, m.loss)
    else:
        step_m = mnn.value_and_grad(m, lambda x, y, h, c: m.loss(x, y, (h, c)))
    z = mx.zeros((cfg.num_layers, B, cfg.hidden_size))
    carry_m = (z, z)
    losses_m = []
    for x, y in batches:
        if task == "classify":
            loss, grads = step_m(mx.array(x), mx.array(y))
        else:
            (loss, carry_m), grads = step_m(mx.array(x), mx.array(y), *carry_m)
        opt_m.update(m, grads)
        mx.eval(m.parameters(), opt_m.state, carry_m, loss)
        losses_m.append(loss.item())
    # PyTorch
    opt_t = torch.optim.SGD(t.parameters(), lr=lr)
    zt = torch.zeros((cfg.num_layers, B, cfg.hidden_size), device=devices.torch)
    carry_t = (zt, zt.clone())
    losses_t = []
    for x, y in batches:
        opt_t.zero_grad(set_to_none=True)
        xt, yt = to_torch(x, devices.torch, True), to_torch(y, devices.torch, True)
        if task == "classify":
            loss = t.loss(xt, yt)
        else:
            loss, carry_t = t.loss(xt, yt, carry_t)
            carry_t = (carry_t[0].detach(), carry_t[1].detach())
        loss.backward()
        opt_t.step()
        losses_t.append(loss.item())
    np.testing.assert_allclose(losses_m, losses_t, rtol=1e-5, atol=1e-6)
    w0 = mlx_model(cfg, seed=21).weights()
    assert max(max_abs_diff(m.weights()[k], w0[k]) for k in w0) > 1e-2, "SGD did not move the weights"
    assert_params_close(m.weights(), t.weights(), PARAM_TOL, "after 20 SGD steps")


# ----- training: the real Trainers (AdamW with bias correction, clipping, schedule) ------------
@pytest.mark.parametrize("task,prefix_weight", [("classify", 1.0), ("classify", 0.0), ("lm", None)],
                         ids=["classify", "classify_no_prefix_loss", "lm"])
def test_adam_trainer_20_steps(task, prefix_weight, devices):
    """mlx_rnn.train.Trainer vs torch_ref.train.Trainer from the same weights over one 20-step epoch
    (shared batching plan, Adam, clipping at 1.0; the classifier with and without the prefix loss):
    every parameter within 1e-4, same epoch loss."""
    cfg = make_config(task, 1)
    if prefix_weight is not None:
        assert cfg.prefix_weight is not None  # a classify default
        cfg = cfg.replace(prefix_weight=prefix_weight)
    data = synthetic_train(task, cfg, steps=20)
    tm_ = mt.Trainer(cfg, data)
    tt_ = tt.Trainer(cfg, data)
    tt_.load_weights(tm_.weights())
    assert tm_.steps_per_epoch == tt_.steps_per_epoch == 20
    rm, rt = tm_.train_epoch(0), tt_.train_epoch(0)
    assert rm.steps == rt.steps == 20
    assert rm.nonfinite_step is None and rt.nonfinite_step is None
    assert abs(rm.mean_loss - rt.mean_loss) <= 1e-5 * max(1.0, abs(rt.mean_loss))
    assert_params_close(tm_.weights(), tt_.weights(), PARAM_TOL, "after 20 Adam steps")


@pytest.mark.parametrize("task", TASKS)
def test_trainer_epochs_with_schedule(task, devices):
    """The whole-epoch path with every optimiser setting on: AdamW weight decay, warm-up, cosine
    schedule, clipping, 2 layers, LM state carried across chunks; two short epochs (new data order /
    offsets in the second): per-epoch losses agree to 1e-5 relative and parameters to 1e-4."""
    cfg = make_config(task, 2, epochs=2, weight_decay=0.05, warmup_steps=3, lr_schedule="cosine",
                      clip_norm=0.5, lr=5e-3)
    data = synthetic_train(task, cfg, steps=6)
    tm_ = mt.Trainer(cfg, data)
    tt_ = tt.Trainer(cfg, data)
    tt_.load_weights(tm_.weights())
    for epoch in range(2):
        rm, rt = tm_.train_epoch(epoch), tt_.train_epoch(epoch)
        assert rm.steps == rt.steps == tm_.steps_per_epoch
        assert abs(rm.mean_loss - rt.mean_loss) <= 1e-5 * max(1.0, abs(rt.mean_loss)), f"epoch {epoch + 1}"
    assert tm_.global_step == tt_.global_step == 2 * tm_.steps_per_epoch
    assert_params_close(tm_.weights(), tt_.weights(), PARAM_TOL, "after two epochs")
