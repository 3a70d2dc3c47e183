"""MLX training: one compiled step over model, optimizer and RNG state, and its batches.

Mirrored by ``torch_ref/train.py``. The epoch control (timing, the device-side non-finite
marker, progress, interruption) lives once, in :mod:`mlx_rnn.run.epoch`; checkpoints and
reporting around it in :mod:`mlx_rnn.run`.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import _blas, device  # noqa: F401  (device before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from mlx_rnn.core import batching, distributed, switches
from mlx_rnn.core import precision as _precision
from mlx_rnn.core.batching import lm_chunk, prefix_labels
from mlx_rnn.core.config import RunConfig
from mlx_rnn.run.epoch import EpochLoop

from . import native, parallel, recurrence
from .layers import native_masks
from .models import build_model, wrap
from .optimizer import AdamW, fused_enabled  # mlx.optimizers' AdamW (with clipping) fused on the CPU

FRAMEWORK = "mlx"


def framework_version() -> str:
    return mx.__version__


def select_device(name: str = "auto") -> str:
    """Make ``name`` (auto, gpu, cpu) MLX's default device; return "gpu" or "cpu".

    Raises:
        ValueError: "gpu" asked for where MLX has no GPU back end.
    """
    has_gpu = mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available())
    if name == "auto":
        name = "gpu" if has_gpu else "cpu"
    if name == "gpu" and not has_gpu:
        raise ValueError("--device gpu: this MLX build has no GPU back end (Metal or CUDA); use --device cpu")
    if name not in ("gpu", "cpu"):
        raise ValueError(f"unknown MLX device {name!r} (auto, gpu, cpu)")
    mx.set_default_device(mx.gpu if name == "gpu" else mx.cpu)
    return name


def synchronize() -> None:
    """Wait for all queued MLX work (used around timers)."""
    mx.synchronize()


def _device_kind() -> str:
    return "gpu" if mx.default_device().type == mx.DeviceType.gpu else "cpu"


def set_tf32(allowed: bool) -> None:
    """``--tf32``: allow TF32 in MLX's float32 products on a GPU (full float32 otherwise), unless
    the user set ``MLX_ENABLE_TF32`` (theirs wins). Call before MLX's first GPU matmul.

    Raises:
        ValueError: the user's ``MLX_ENABLE_TF32`` is not an integer.
    """
    _precision.request_mlx_tf32(allowed)


def precision() -> str:
    """``"float32"`` or ``"tf32"``: what float32 products on the default device run as."""
    return _precision.mlx_precision(_device_kind())


def describe_precision() -> str:
    """The run header's words for :func:`precision` (where the choice came from)."""
    return _precision.describe_mlx(_device_kind())


class Trainer(EpochLoop):
    """Trains one model (classifier or LM) with Adam/AdamW, gradient clipping and a schedule.

    Args:
        config: the run configuration (see :mod:`mlx_rnn.core.config`); ``config.seed``
            seeds initialisation and dropout.
        train: encoded training data: ``(x int32 (N, T), y int32 (N,))`` for "classify",
            int32 ids (n,) for "lm".
    """

    def __init__(self, config: RunConfig, train):
        self.config = config
        self.task = config.task
        self.dist = distributed.current()  # data-parallel rank and world size (1: one process)
        mx.random.seed(config.seed)
        self.model = build_model(config)
        mx.eval(self.model.parameters())
        parallel.setup_model(self.model, config, self.dist)
        # gradient clipping to clip_norm (0: none) happens inside the update (mlx_rnn.optimizer)
        self.optimizer = AdamW(learning_rate=config.lr, betas=[0.9, 0.999], eps=1e-8,
                               weight_decay=config.weight_decay, bias_correction=True,
                               max_grad_norm=max(0.0, float(config.clip_norm)))
        self.optimizer.init(self.model.trainable_parameters())
        self.train_data = train
        # classify: the vowel label after every prefix of each window (the prefix loss; batching.prefix_labels)
        self.prefix_y = prefix_labels(train[0], config.vocab) if self.task == "classify" else None
        self.global_step = 0
        self.carry = None  # LM hidden state carried between chunks (stateful truncated BPTT)
        self._init_loop()
        self._build_step()

    # ----- the compiled step -------------------------------------------------
    def _build_step(self):
        model, optimizer = self.model, self.optimizer
        state = [model.state, optimizer.state, mx.random.state]
        reduce = parallel.gradient_reducer(self.dist)  # identity for one process
        # no fused kernels where the native recurrence serves a CPU run: nothing to compile at first use
        native.configure_fusion(recurrence.path_for(mx.float32) == "native")

        def apply(grads):  # clip to config.clip_norm, then AdamW (optimizer.max_grad_norm)
            optimizer.update(model, grads)

        if self.task == "classify":
            prefix_weight = float(self.config.prefix_weight or 0.0)

            def classify_loss(x, y, prefix_y):
                return model.loss(x, y, prefix_y, prefix_weight)

            loss_and_grad = nn.value_and_grad(model, classify_loss)

            @partial(mx.compile, inputs=state, outputs=state)
            def step(x, y, prefix_y, *weight):
                loss, grads = loss_and_grad(x, y, prefix_y)
                loss, grads = reduce(loss, grads, *weight)
                apply(grads)
                return loss
        else:
            def lm_loss(x, y, carry):
                return model.loss(x, y, carry)

            loss_and_grad = nn.value_and_grad(model, lm_loss)

            @partial(mx.compile, inputs=state, outputs=state)
            def step(x, y, carry, *weight):  # carry: (h, c) for the LSTM, (h,) for the GRU
                (loss, carry), grads = loss_and_grad(x, y, carry)
                loss, grads = reduce(loss, grads, *weight)
                apply(grads)
                return loss, carry
        self._step = step
        self._state = state

    # ----- one epoch's batches (the epoch control: mlx_rnn.run.epoch) --------------
    def _epoch_batches(self, epoch: int):
        cfg, dist = self.config, self.dist
        if self.task == "classify":
            x_all, y_all = self.train_data
            # this rank's share of the shared plan: [(indices, gradient weight)]
            batches = batching.classify_plan(len(y_all), cfg.batch_size, cfg.seed, epoch,
                                                dist.rank, dist.world_size)[:self.steps_per_epoch]

            def run(k):
                idx, weight = batches[k]
                return self._step(mx.array(x_all[idx]), mx.array(y_all[idx]), mx.array(self.prefix_y[idx]),
                                  *parallel.weight_args(dist, weight))
            return run
        streams = batching.lm_shard_streams(self.train_data, cfg.batch_size, cfg.seq_len, cfg.seed,
                                               epoch, dist.rank, dist.world_size)
        lm_weight = parallel.weight_args(dist, 1.0 / dist.world_size)

        def run(k):
            xb, yb = lm_chunk(streams, k, cfg.seq_len)
            loss, self.carry = self._step(mx.array(xb), mx.array(yb), self.carry, *lm_weight)
            return loss
        return run

    def _set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate = mx.array(lr)

    def _zeros(self, shape):
        return mx.zeros(shape)

    def _markers(self):
        return mx.array(0.0), mx.array(-1)

    def _accumulate(self, loss_sum, bad, loss, k):
        loss_sum = loss_sum + loss
        bad = mx.where((bad < 0) & ~mx.isfinite(loss), k, bad)
        mx.async_eval(self._state, loss_sum, bad, self.carry)
        return loss_sum, bad

    def _settle(self, *arrays) -> None:
        mx.eval(self._state, *arrays)
        synchronize()

    # ----- state in and out ---------------------------------------------------
    def wrapper(self):
        """The API wrapper over the current model (switches it to eval mode)."""
        return wrap(self.model, self.config)

    def training_state(self) -> dict:
        """Optimizer moments, step, RNG key and LM carry as ``{name: numpy array}``."""
        out = {f"optimizer.{k}": np.array(v) for k, v in tree_flatten(self.optimizer.state)}
        out["rng.key"] = np.array(mx.random.state[0])
        for name, value in zip(("carry.h", "carry.c"), self.carry or ()):
            out[name] = np.array(value)
        return out

    def load_training_state(self, tensors: dict) -> None:
        opt = [(k[len("optimizer."):], mx.array(v)) for k, v in tensors.items() if k.startswith("optimizer.")]
        self.optimizer.state = tree_unflatten(opt)
        set_rng_key(tensors["rng.key"])
        if "carry.h" in tensors:
            self.carry = tuple(mx.array(tensors[k]) for k in ("carry.h", "carry.c") if k in tensors)
        self._build_step()


def set_rng_key(key) -> None:
    """Make ``key`` (uint32 (2,), as saved from ``mx.random.state[0]``) MLX's global RNG key.

    ``mx.random.state`` cannot be assigned to, but ``mx.random.seed(s)`` sets the key to
    ``mx.random.key(s)`` = ``[s >> 32, s & 0xFFFFFFFF]``, which reaches every key.
    """
    key = np.asarray(key)
    if key.shape != (2,) or key.dtype != np.uint32:
        raise ValueError(f"RNG key must be uint32 of shape (2,), got {key.dtype} {key.shape}")
    mx.random.seed((int(key[0]) << 32) | int(key[1]))
    if not np.array_equal(np.array(mx.random.state[0]), key):
        raise ValueError("could not restore MLX's random key")


def describe_backend() -> str:
    """One line for run headers: the BLAS MLX actually uses (detected), the recurrence path,
    the optimizer update (native primitives or Python-level ops, and why), what ``mx.compile``
    builds at first use (:func:`mlx_rnn.native.describe_fusion`) and, when any is set, the
    environment switches not at their default (``; switches: MLX_RNN_PACKED=0, ...``).

    Raises:
        ValueError: a bad switch (:func:`mlx_rnn.core.switches.read`).
    """
    compiled = native.describe_fusion(recurrence.path_for(mx.float32) == "native")
    adamw = "fused native AdamW and clipping" if fused_enabled() else "mlx.optimizers AdamW"
    dropout = "native dropout masks" if native_masks() else "mlx.nn dropout"
    line = f"{_blas.describe()}; recurrence: {recurrence.describe()}; {adamw}; {dropout}; {compiled}"
    set_ = switches.describe()
    return line + (f"; switches: {set_}" if set_ else "")
