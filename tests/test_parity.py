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

This module: forward passes, dev-data metrics, initialisation and checkpoints; gradients and
training steps are in test_parity_training.py, and the helpers both use (twin models on the
same weights, forward passes, comparisons, the ``devices`` fixture) in parity_helpers.py.
Sizes are tiny so the suite runs in well under a minute on two CPU cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

import mlx_rnn  # noqa: E402
import torch_ref  # noqa: E402
from mlx_rnn import models as mm  # noqa: E402
from mlx_rnn import train as mt  # noqa: E402
from mlx_rnn.core.checkpoint import save_checkpoint  # noqa: E402
from mlx_rnn.core.config import RunConfig  # noqa: E402
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, load_examples, read_text  # noqa: E402
from mlx_rnn.core.metrics import check_normalizes, classification_bundle, perplexity_figures  # noqa: E402
from mlx_rnn.core.vocab import TEXT8, TEXT8_SYMBOLS  # noqa: E402
from tests.parity_helpers import devices  # noqa: E402,F401  (the fixture, for pytest)
from tests.parity_helpers import (LOG_PROB_TOL, LOGIT_TOL, PPL_REL_TOL, SMALL_LOGIT, TASKS,  # noqa: E402
                                  make_config, max_abs_diff, mlx_forward, mlx_model, rand_ids,
                                  rand_state, synthetic_train, torch_forward, torch_twin)
from torch_ref import models as tm  # noqa: E402
from torch_ref import train as tt  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    B, T = 4, cfg.seq_len
    x = rand_ids((B, T), seed=2)
    state = rand_state(cfg, B, seed=3) if with_state else None
    lm_, sm = mlx_forward(m, task, x, state)
    lt, st = torch_forward(t, task, x, state)
    assert lm_.shape == lt.shape == ((B,) if task == "classify" else (B, T, 27))
    assert max_abs_diff(lm_, lt) <= LOGIT_TOL
    if sm is not None:
        assert max_abs_diff(sm[0], st[0]) <= LOGIT_TOL and max_abs_diff(sm[1], st[1]) <= LOGIT_TOL


# ----- forward: trained weights -------------------------------------------------------------
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
    x = rand_ids((4, cfg.seq_len), seed=7)
    assert max_abs_diff(mlx_forward(m, task, x)[0], torch_forward(t, task, x)[0]) <= LOGIT_TOL


# ----- real data: dev log probability and dev predictions ------------------------------------
def _train_small_mlx(cfg: RunConfig, data, steps: int) -> dict:
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


def _wrappers(cfg: RunConfig, weights: dict, device):
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


# ----- initialisation ------------------------------------------------------------------------
def _expected_init(name: str, cfg: RunConfig):
    """("normal", 1.0) or ("uniform", bound) for a parameter name."""
    if name == "embedding.weight":
        return "normal", 1.0
    # LSTM: PyTorch's U(-1/sqrt(H), 1/sqrt(H)); output layer: fan_in is also the hidden size H.
    return "uniform", 1.0 / math.sqrt(cfg.hidden_size)


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
    save_checkpoint(tmp_path / "ck", weights, cfg.to_json({"framework": "mlx", "framework_version": mx.__version__}))
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
