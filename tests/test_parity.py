"""MLX vs PyTorch parity: the same weights give the same numbers in both frameworks.

Float32 throughout. Every comparison runs on the CPU of both frameworks and, where
present, on each accelerator (MLX ``gpu`` = Metal or CUDA; PyTorch ``mps`` or
``cuda``) against the other framework's CPU; parameters for an absent device are
skipped with a reason, so the same file checks Metal and MPS on a Mac.

Bars (``mlx_rnn.tools.compare.TOLERANCES`` adds 1.3e-6 |logit| to the logit bar for trained
models' large logits; these tiny models are held to the absolute figure alone):
logits 1e-5 absolute; dev-text log probability 1e-3 nats absolute; perplexity 1e-5
relative; classifier predictions identical except where |logit| < 1e-5; gradients
per tensor max |diff| <= 1e-4 * max |torch grad|; parameters after 20 SGD or Adam
steps within 1e-4.

Sizes are tiny so the file runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

import mlx.nn as mnn  # noqa: E402
import mlx.optimizers as mopt  # noqa: E402

import mlx_rnn  # noqa: E402
import torch_ref  # noqa: E402
from mlx_rnn import models as mm  # noqa: E402
from mlx_rnn import train as mt  # noqa: E402
from mlx_rnn.core.checkpoint import save_checkpoint  # noqa: E402
from mlx_rnn.core.config import COMMON_DEFAULTS, TASK_DEFAULTS  # noqa: E402
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, load_examples, read_text  # noqa: E402
from mlx_rnn.core.metrics import check_normalizes, classification_bundle, perplexity_figures  # noqa: E402
from mlx_rnn.core.vocab import TEXT8, TEXT8_SYMBOLS  # noqa: E402
from torch_ref import models as tm  # noqa: E402
from torch_ref import train as tt  # noqa: E402

LOGIT_TOL = 1e-5
LOG_PROB_TOL = 1e-3
PPL_REL_TOL = 1e-5
SMALL_LOGIT = 1e-5
GRAD_REL_TOL = 1e-4
PARAM_TOL = 1e-4

TASKS = ("classify", "lm")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----- devices --------------------------------------------------------------------------
def _mlx_has_gpu() -> bool:
    return bool(mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available()))


def _torch_has(kind: str) -> bool:
    if kind == "mps":
        return bool(hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if kind == "cuda":
        return bool(torch.cuda.is_available())
    return True


# (MLX device, torch device): CPU against CPU always; each accelerator against the other's CPU.
DEVICE_PAIRS = [("cpu", "cpu"), ("gpu", "cpu"), ("cpu", "mps"), ("cpu", "cuda")]
DEVICE_IDS = [f"mlx_{m}-torch_{t}" for m, t in DEVICE_PAIRS]


@pytest.fixture(params=DEVICE_PAIRS, ids=DEVICE_IDS)
def devices(request):
    """Make the pair the default devices of both frameworks (and their trainers); restore CPU after."""
    mdev, tdev = request.param
    if mdev == "gpu" and not _mlx_has_gpu():
        pytest.skip("MLX has no GPU back end here (neither Metal nor CUDA)")
    if not _torch_has(tdev):
        pytest.skip(f"PyTorch device {tdev!r} is not available here")
    old_mlx = mx.default_device()
    old_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    # Parity is float32 arithmetic: no TF32 tensor cores (cuDNN's default is to allow them).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    mt.select_device(mdev)
    tt.select_device(tdev)
    try:
        yield SimpleNamespace(mlx=mdev, torch=tt.current_device())
    finally:
        mx.set_default_device(old_mlx)
        tt.select_device("cpu")
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32


# ----- helpers ----------------------------------------------------------------------------
def make_config(task: str, num_layers: int = 1, **overrides) -> dict:
    """A small run configuration with the same keys resolve_config produces."""
    cfg = dict(TASK_DEFAULTS[task])
    cfg.update(COMMON_DEFAULTS)
    cfg.update(task=task, vocab=TEXT8_SYMBOLS, vocab_size=len(TEXT8_SYMBOLS), cell="lstm", device="cpu",
               embed_dim=8, hidden_size=16, num_layers=num_layers, dropout=0.0, epochs=1, batch_size=4,
               seq_len=20 if task == "classify" else 12)
    cfg.update(overrides)
    return cfg


def mlx_model(cfg: dict, seed: int = 0):
    mx.random.seed(seed)
    m = mm.build_model(cfg)
    mx.eval(m.parameters())
    return m


def torch_twin(weights: dict, cfg: dict, device):
    t = tm.build_model(cfg)
    t.load_numpy(weights)
    return t.to(device)


def rand_ids(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(TEXT8_SYMBOLS), size=shape).astype(np.int32)


def rand_state(cfg: dict, batch: int, seed: int):
    """(h0, c0) float32 (num_layers, B, H), moderately sized."""
    rng = np.random.default_rng(seed)
    shape = (cfg["num_layers"], batch, cfg["hidden_size"])
    return (0.5 * rng.standard_normal(shape)).astype(np.float32), (0.5 * rng.standard_normal(shape)).astype(np.float32)


def to_torch(a: np.ndarray, device, long: bool = False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return (t.long() if long else t).to(device)


def mlx_forward(m, task: str, x: np.ndarray, state=None):
    """(logits, (h_n, c_n) or None) as numpy. A classifier run from a given state uses the
    model's own layers: embedding -> lstm(state) -> output at the last step."""
    xm = mx.array(x)
    st = None if state is None else (mx.array(state[0]), mx.array(state[1]))
    if task == "lm":
        logits, (h, c) = m(xm, st)
        return np.array(logits), (np.array(h), np.array(c))
    if st is None:
        return np.array(m(xm)), None
    out, (h, c) = m.lstm(m.embedding(xm), st)
    return np.array(m.output(out[:, -1, :]).squeeze(-1)), (np.array(h), np.array(c))


def torch_forward(t, task: str, x: np.ndarray, state=None):
    dev = t.device
    xt = to_torch(x, dev, long=True)
    st = None if state is None else (to_torch(state[0], dev), to_torch(state[1], dev))
    with torch.no_grad():
        if task == "lm":
            logits, (h, c) = t(xt, st)
            return logits.cpu().numpy(), (h.cpu().numpy(), c.cpu().numpy())
        if st is None:
            return t(xt).cpu().numpy(), None
        out, (h, c) = t.lstm(t.embedding(xt), st)
        return t.output(out[:, -1, :]).squeeze(-1).cpu().numpy(), (h.cpu().numpy(), c.cpu().numpy())


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def assert_params_close(mw: dict, tw: dict, tol: float, what: str) -> None:
    assert set(mw) == set(tw)
    bad = {k: max_abs_diff(mw[k], tw[k]) for k in mw}
    worst = max(bad, key=bad.get)
    assert bad[worst] <= tol, f"{what}: {worst} differs by {bad[worst]:.3e} (> {tol:g}); all: " + ", ".join(
        f"{k} {v:.1e}" for k, v in bad.items())


# ----- forward: random weights ------------------------------------------------------------
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "given_state"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("task", TASKS)
def test_forward_random_weights(task, num_layers, with_state, devices):
    """Random MLX weights copied into torch: logits (and final states) within 1e-5."""
    cfg = make_config(task, num_layers)
    m = mlx_model(cfg, seed=1)
    t = torch_twin(m.weights(), cfg, devices.torch)
    m.eval()
    t.eval()
    B, T = 4, cfg["seq_len"]
    x = rand_ids((B, T), seed=2)
    state = rand_state(cfg, B, seed=3) if with_state else None
    lm_, sm = mlx_forward(m, task, x, state)
    lt, st = torch_forward(t, task, x, state)
    assert lm_.shape == lt.shape == ((B,) if task == "classify" else (B, T, 27))
    assert max_abs_diff(lm_, lt) <= LOGIT_TOL
    if sm is not None:
        assert max_abs_diff(sm[0], st[0]) <= LOGIT_TOL and max_abs_diff(sm[1], st[1]) <= LOGIT_TOL


# ----- forward: trained weights -------------------------------------------------------------
def synthetic_train(task: str, cfg: dict, steps: int = 20, seed: int = 5):
    """Training data for exactly ``steps`` steps per epoch with ``cfg``'s batch size / seq_len."""
    rng = np.random.default_rng(seed)
    if task == "classify":
        n = steps * cfg["batch_size"]
        x = rng.integers(0, 27, size=(n, cfg["seq_len"])).astype(np.int32)
        y = (x[:, -1] % 2).astype(np.int32)  # learnable: parity of the last symbol
        return x, y
    # lm_streams keeps (len - offset - 1) // B // S * S per stream; one chunk is kept in reserve
    # for the random offset, so steps + 1 chunks per stream fit for every offset in [0, S).
    n = cfg["batch_size"] * (steps + 1) * cfg["seq_len"] + cfg["seq_len"]
    text = " ".join("the cat sat on the mat and a dog ran far away"[i % 7:] for i in range(n // 20 + 2))
    return TEXT8.encode(text[:n])


@pytest.mark.parametrize("source", ["mlx", "torch"], ids=["trained_mlx", "trained_torch"])
@pytest.mark.parametrize("task", TASKS)
def test_forward_trained_weights(task, source, devices):
    """A model trained a few steps in one framework gives the same logits in the other."""
    cfg = make_config(task, 2, lr=2e-2)
    data = synthetic_train(task, cfg, steps=8)
    trainer = (mt if source == "mlx" else tt).Trainer(cfg, data)
    w0 = trainer.weights()
    res = trainer.train_epoch(0)
    assert res.steps == 8 and res.nonfinite_step is None
    w = trainer.weights()
    assert max(max_abs_diff(w[k], w0[k]) for k in w) > 1e-2, "training did not move the weights"
    m = mm.build_model(cfg)
    m.load_numpy(w)
    t = torch_twin(w, cfg, devices.torch)
    m.eval()
    t.eval()
    x = rand_ids((4, cfg["seq_len"]), seed=7)
    assert max_abs_diff(mlx_forward(m, task, x)[0], torch_forward(t, task, x)[0]) <= LOGIT_TOL


# ----- real data: dev log probability and dev predictions ------------------------------------
def _train_small_mlx(cfg: dict, data, steps: int) -> dict:
    """Train in MLX on the CPU for ``steps`` steps; returns the weights."""
    old = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        trainer = mt.Trainer(cfg, data)
        trainer.steps_per_epoch = min(trainer.steps_per_epoch, steps)
        res = trainer.train_epoch(0)
        assert res.nonfinite_step is None
        return trainer.weights()
    finally:
        mx.set_default_device(old)


@pytest.fixture(scope="module")
def real_lm(data_dir):
    """(config, weights, dev text): a small LM trained 30 steps on text8-100k.txt."""
    cfg = make_config("lm", 1, embed_dim=16, hidden_size=32, batch_size=8, seq_len=25, lr=1e-2)
    text = read_text(data_dir / LM_FILES["train"], TEXT8)
    weights = _train_small_mlx(cfg, TEXT8.encode(text[:20000]), steps=30)
    return cfg, weights, read_text(data_dir / LM_FILES["dev"], TEXT8)


@pytest.fixture(scope="module")
def real_classifier(data_dir):
    """(config, weights, dev examples): a small classifier trained 40 steps on the training examples."""
    cfg = make_config("classify", 1, embed_dim=16, hidden_size=32, batch_size=32, lr=1e-2)
    train = load_examples(data_dir / CLASSIFY_FILES["train_consonant"], data_dir / CLASSIFY_FILES["train_vowel"])
    weights = _train_small_mlx(cfg, (train.x, train.y), steps=40)
    dev = load_examples(data_dir / CLASSIFY_FILES["dev_consonant"], data_dir / CLASSIFY_FILES["dev_vowel"])
    return cfg, weights, dev


def _wrappers(cfg: dict, weights: dict, device):
    m = mm.build_model(cfg)
    m.load_numpy(weights)
    return mm.wrap(m, cfg), tm.wrap(torch_twin(weights, cfg, device), cfg)


@pytest.mark.data
def test_lm_dev_log_prob(real_lm, devices):
    """log P(dev text | " ") within 1e-3 nats; perplexity within 1e-5 relative; logits within 1e-5."""
    cfg, weights, dev = real_lm
    mw, tw = _wrappers(cfg, weights, devices.torch)
    lp_m = mw.get_log_prob_sequence(dev, " ")
    lp_t = tw.get_log_prob_sequence(dev, " ")
    assert math.isfinite(lp_m) and lp_m < 0
    assert abs(lp_m - lp_t) <= LOG_PROB_TOL
    pm, pt = perplexity_figures(lp_m, len(dev))["perplexity"], perplexity_figures(lp_t, len(dev))["perplexity"]
    assert abs(pm - pt) / pt <= PPL_REL_TOL
    assert pm < 27, "the trained model should beat the uniform distribution"
    x = TEXT8.encode(" " + dev[:-1])[None, :]
    assert max_abs_diff(mlx_forward(mw.model, "lm", x)[0], torch_forward(tw.model, "lm", x)[0]) <= LOGIT_TOL


@pytest.mark.data
def test_classifier_dev_predictions(real_classifier, devices):
    """All 1,000 dev predictions identical except where |logit| < 1e-5; logits within 1e-5."""
    cfg, weights, dev = real_classifier
    assert len(dev.texts) == 1000
    mw, tw = _wrappers(cfg, weights, devices.torch)
    a, b = mw.logits(dev.texts), tw.logits(dev.texts)
    assert max_abs_diff(a, b) <= LOGIT_TOL
    pa, pb = mw.predict_batch(dev.texts), tw.predict_batch(dev.texts)
    differ = pa != pb
    small = np.maximum(np.abs(a), np.abs(b)) < SMALL_LOGIT
    assert not np.any(differ & ~small), f"{int((differ & ~small).sum())} predictions differ with |logit| >= 1e-5"
    ca, cb = classification_bundle(pa, dev.y), classification_bundle(pb, dev.y)
    assert abs(ca["correct"] - cb["correct"]) <= int(differ.sum())


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
    """d loss / d parameter (and d loss / d (h0, c0)): per tensor max |diff| <= 1e-4 * max |torch grad|."""
    cfg = make_config(task, num_layers)
    m = mlx_model(cfg, seed=11)
    t = torch_twin(m.weights(), cfg, devices.torch)
    m.train()
    t.train()
    B, T = 4, cfg["seq_len"]
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
        assert diff <= GRAD_REL_TOL * scale, f"{name}: max |grad diff| {diff:.3e} > 1e-4 * {scale:.3e}"
    if state is not None:
        for what, a, b in (("h0", sm[0], st[0]), ("c0", sm[1], st[1])):
            scale = float(np.max(np.abs(b)))
            assert max_abs_diff(a, b) <= GRAD_REL_TOL * scale, f"d loss / d {what}"


@pytest.mark.parametrize("num_layers", [1, 2])
def test_prefix_loss_and_gradients(num_layers, devices):
    """The classifier's prefix loss (batching.prefix_labels, weight 0.7): the loss equals a numpy
    computation from prefix_logits, prefix_logits' last column is model(x), and loss and
    gradients agree across frameworks (same bars as test_gradients)."""
    from mlx_rnn.core.batching import prefix_labels

    cfg = make_config("classify", num_layers)
    m = mlx_model(cfg, seed=31)
    t = torch_twin(m.weights(), cfg, devices.torch)
    B, T, w = 6, cfg["seq_len"], 0.7
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
    t.eval()
    t.zero_grad(set_to_none=True)
    loss_t = t.loss(to_torch(x, devices.torch, True), to_torch(y, devices.torch, True), to_torch(py, devices.torch), w)
    loss_t.backward()
    assert abs(loss_m.item() - loss_t.item()) <= 1e-5 * max(1.0, abs(loss_t.item()))
    for name, p in t.named_parameters():
        g = p.grad.cpu().numpy()
        scale = float(np.max(np.abs(g)))
        assert scale > 0, f"{name}: zero gradient in torch (test too weak)"
        assert max_abs_diff(gm[name], g) <= GRAD_REL_TOL * scale, name
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
    B, T = 4, cfg["seq_len"]
    batches = [(rand_ids((B, T), 100 + k),
                rand_ids((B,), 200 + k) % 2 if task == "classify" else rand_ids((B, T), 200 + k))
               for k in range(steps)]
    # MLX
    opt_m = mopt.SGD(learning_rate=lr)
    if task == "classify":
        step_m = mnn.value_and_grad(m, m.loss)
    else:
        step_m = mnn.value_and_grad(m, lambda x, y, h, c: m.loss(x, y, (h, c)))
    z = mx.zeros((cfg["num_layers"], B, cfg["hidden_size"]))
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
    zt = torch.zeros((cfg["num_layers"], B, cfg["hidden_size"]), device=devices.torch)
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
        assert "prefix_weight" in cfg  # a classify default
        cfg["prefix_weight"] = prefix_weight
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


# ----- initialisation ------------------------------------------------------------------------
def _expected_init(name: str, cfg: dict):
    """("normal", 1.0) or ("uniform", bound) for a parameter name."""
    if name == "embedding.weight":
        return "normal", 1.0
    # LSTM: PyTorch's U(-1/sqrt(H), 1/sqrt(H)); output layer: fan_in is also the hidden size H.
    return "uniform", 1.0 / math.sqrt(cfg["hidden_size"])


def _check_distribution(name: str, values: np.ndarray, kind: str, scale: float) -> list[str]:
    """Problems found (empty if none). 5-sigma bounds on mean and standard deviation."""
    v = values.astype(np.float64).ravel()
    n = v.size
    problems = []
    if kind == "uniform":
        sigma = scale / math.sqrt(3.0)
        rel_sd_of_std = math.sqrt(0.2 / n)  # Var(X^2) = 4k^4/45 for U(-k, k)
        if v.min() < -scale * (1 + 1e-6) or v.max() > scale * (1 + 1e-6):
            problems.append(f"{name}: values outside [-{scale:.4f}, {scale:.4f}]: [{v.min():.4f}, {v.max():.4f}]")
        if n >= 100:  # the extremes reach close to the bounds (P(miss) < 1e-7 per side)
            eps = 2 * 16.2 / n
            if v.max() < scale * (1 - eps) or v.min() > -scale * (1 - eps):
                problems.append(f"{name}: range [{v.min():.4f}, {v.max():.4f}] does not fill "
                                f"[-{scale:.4f}, {scale:.4f}]")
    else:
        sigma = scale
        rel_sd_of_std = math.sqrt(0.5 / n)
        if n >= 500 and np.max(np.abs(v)) <= math.sqrt(3.0) * scale:
            problems.append(f"{name}: no value beyond sqrt(3) sigma: not a normal distribution")
    if n >= 30:
        if abs(v.mean()) > 5 * sigma / math.sqrt(n):
            problems.append(f"{name}: mean {v.mean():.4f}, expected 0 +- {5 * sigma / math.sqrt(n):.4f}")
        if abs(v.std() / sigma - 1) > 5 * rel_sd_of_std:
            problems.append(f"{name}: std {v.std():.4f}, expected {sigma:.4f} (+- {100 * 5 * rel_sd_of_std:.1f}%)")
    return problems


@pytest.mark.parametrize("framework", ["mlx", "torch"])
@pytest.mark.parametrize("task", TASKS)
def test_initialisation_distribution(task, framework):
    """Each parameter is drawn from PyTorch's distribution in both frameworks: LSTM and linear
    U(-1/sqrt(fan), 1/sqrt(fan)), embedding N(0, 1) (bounds, mean and standard deviation)."""
    cfg = make_config(task, 2, embed_dim=32, hidden_size=64)
    if framework == "mlx":
        weights = mlx_model(cfg, seed=31).weights()
    else:
        torch.manual_seed(31)
        weights = tm.build_model(cfg).weights()
    expected = {"embedding.weight", "output.weight", "output.bias"} | {
        f"lstm.{p}_l{k}" for k in range(2) for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    assert set(weights) == expected
    problems = []
    for name, values in weights.items():
        assert values.dtype == np.float32
        kind, scale = _expected_init(name, cfg)
        problems += _check_distribution(name, values, kind, scale)
    assert not problems, "; ".join(problems)


# ----- one checkpoint, both frameworks -------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_checkpoint_loads_same_in_both(task, tmp_path, devices):
    """save_checkpoint once; mlx_rnn.load and torch_ref.load give the same figures."""
    cfg = make_config(task, 2)
    weights = mlx_model(cfg, seed=41).weights()
    save_checkpoint(tmp_path / "ck", weights, dict(cfg, framework="mlx", framework_version=mx.__version__))
    mw, tw = mlx_rnn.load(tmp_path / "ck"), torch_ref.load(tmp_path / "ck", device=devices.torch)
    for name, w in weights.items():
        np.testing.assert_array_equal(mw.model.weights()[name], w)
        np.testing.assert_array_equal(tw.model.weights()[name], w)
    if task == "classify":
        rng = np.random.default_rng(42)
        texts = ["".join(TEXT8_SYMBOLS[i] for i in rng.integers(0, 27, 20)) for _ in range(32)]
        labels = rng.integers(0, 2, 32)
        a, b = mw.logits(texts), tw.logits(texts)
        assert max_abs_diff(a, b) <= LOGIT_TOL
        assert mw.predict("the cat sat on the m") == tw.predict("the cat sat on the m")
        ca = classification_bundle(mw.predict_batch(texts), labels)
        cb = classification_bundle(tw.predict_batch(texts), labels)
        small = int((np.maximum(np.abs(a), np.abs(b)) < SMALL_LOGIT).sum())
        assert abs(ca["correct"] - cb["correct"]) <= small
    else:
        text = "anarchism originated as a term of abuse first used against early working class radicals"
        lp_a, lp_b = mw.get_log_prob_sequence(text, " "), tw.get_log_prob_sequence(text, " ")
        assert abs(lp_a - lp_b) <= LOG_PROB_TOL
        pa, pb = perplexity_figures(lp_a, len(text))["perplexity"], perplexity_figures(lp_b, len(text))["perplexity"]
        assert abs(pa - pb) / pb <= PPL_REL_TOL
        assert check_normalizes(mw) and check_normalizes(tw)
        assert max_abs_diff(mw.get_next_char_log_probs("the c"), tw.get_next_char_log_probs("the c")) <= LOGIT_TOL
        assert max_abs_diff(mw.get_next_char_log_probs(""), tw.get_next_char_log_probs(" ")) <= LOGIT_TOL
