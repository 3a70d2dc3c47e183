"""Shared helpers of the MLX vs PyTorch parity tests (tests/test_parity.py and
tests/test_parity_training.py): the bars, the device pairs (the ``devices`` fixture), small
configurations, one model's weights copied into the other framework, forward passes from a
given state in both, and comparisons.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

from mlx_rnn import models as mm  # noqa: E402
from mlx_rnn import train as mt  # noqa: E402
from mlx_rnn.core import config as run_config  # noqa: E402
from mlx_rnn.core.config import RunConfig  # noqa: E402
from mlx_rnn.core.vocab import TEXT8, TEXT8_SYMBOLS  # noqa: E402
from torch_ref import models as tm  # noqa: E402
from torch_ref import train as tt  # noqa: E402

LOGIT_TOL = 1e-5
LOG_PROB_TOL = 1e-3
PPL_REL_TOL = 1e-5
SMALL_LOGIT = 1e-5
GRAD_REL_TOL = 1e-4
#: The absolute floor of a gradient bound (as torch.testing.assert_close has, there 1e-5 for float32):
#: a gradient whose largest entry is tiny (an output bias at 1e-4) is compared to 1e-6, not 1e-8.
GRAD_ABS_TOL = 1e-6
PARAM_TOL = 1e-4

TASKS = ("classify", "lm")


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
    mt.select_device(mdev)
    tt.select_device(tdev)
    # Parity is float32 arithmetic, the projects' default on every device (mlx_rnn.core.precision):
    # no TF32 in MLX (MLX_ENABLE_TF32=0, set when mlx_rnn.device was imported) nor in cuBLAS/cuDNN.
    assert (mt.precision(), tt.precision()) == ("float32", "float32"), (
        f"parity needs full float32: MLX {mt.describe_precision()}, PyTorch {tt.describe_precision()}")
    try:
        yield SimpleNamespace(mlx=mdev, torch=tt.current_device())
    finally:
        mx.set_default_device(old_mlx)
        tt.select_device("cpu")


# ----- helpers ----------------------------------------------------------------------------
def make_config(task: str, num_layers: int = 1, **overrides) -> RunConfig:
    """A small run configuration (:func:`mlx_rnn.core.config.make_config` with small sizes)."""
    small = dict(device="cpu", embed_dim=8, hidden_size=16, num_layers=num_layers, dropout=0.0, epochs=1,
                 batch_size=4, seq_len=20 if task == "classify" else 12)
    return run_config.make_config(task, **{**small, **overrides})


def mlx_model(cfg: RunConfig, seed: int = 0):
    mx.random.seed(seed)
    m = mm.build_model(cfg)
    mx.eval(m.parameters())
    return m


def torch_twin(weights: dict, cfg: RunConfig, device):
    t = tm.build_model(cfg)
    t.load_numpy(weights)
    return t.to(device)


def rand_ids(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, len(TEXT8_SYMBOLS), size=shape).astype(np.int32)


def rand_state(cfg: RunConfig, batch: int, seed: int):
    """(h0, c0) float32 (num_layers, B, H), moderately sized."""
    rng = np.random.default_rng(seed)
    shape = (cfg.num_layers, batch, cfg.hidden_size)
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


def grad_bound(reference) -> float:
    """The largest |difference| a gradient may show against ``reference`` (torch's): GRAD_REL_TOL
    times its largest entry, plus the absolute floor GRAD_ABS_TOL."""
    return GRAD_REL_TOL * float(np.max(np.abs(reference))) + GRAD_ABS_TOL


def assert_params_close(mw: dict, tw: dict, tol: float, what: str) -> None:
    assert set(mw) == set(tw)
    bad = {k: max_abs_diff(mw[k], tw[k]) for k in mw}
    worst = max(bad, key=bad.get)
    assert bad[worst] <= tol, f"{what}: {worst} differs by {bad[worst]:.3e} (> {tol:g}); all: " + ", ".join(
        f"{k} {v:.1e}" for k, v in bad.items())


# ----- training data -----------------------------------------------------------------------
def synthetic_train(task: str, cfg: RunConfig, steps: int = 20, seed: int = 5):
    """Training data for exactly ``steps`` steps per epoch with ``cfg``'s batch size / seq_len."""
    rng = np.random.default_rng(seed)
    if task == "classify":
        n = steps * cfg.batch_size
        x = rng.integers(0, 27, size=(n, cfg.seq_len)).astype(np.int32)
        y = (x[:, -1] % 2).astype(np.int32)  # learnable: parity of the last symbol
        return x, y
    # lm_streams keeps (len - offset - 1) // B // S * S per stream; one chunk is kept in reserve
    # for the random offset, so steps + 1 chunks per stream fit for every offset in [0, S).
    n = cfg.batch_size * (steps + 1) * cfg.seq_len + cfg.seq_len
    text = " ".join("the cat sat on the mat and a dog ran far away"[i % 7:] for i in range(n // 20 + 2))
    return TEXT8.encode(text[:n])
