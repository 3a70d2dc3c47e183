"""MLX training: one compiled step over model, optimizer and RNG state.

Mirrored by ``torch_ref/train.py``; the epoch loop, checkpoints and reporting around
it live once, in :mod:`mlx_rnn.run.runner`. Inside the batch loop nothing is read back
to Python: the loss sum and a "first non-finite step" marker stay on the device and
are read every ``check_every`` steps and at the end of the epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import _blas, device  # noqa: F401  (device before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_unflatten

from mlx_rnn.core import distributed

from . import parallel

from . import recurrence
from mlx_rnn.core.batching import classify_batches, lm_chunk, lm_num_chunks, lm_streams, prefix_labels  # noqa: F401
from .models import build_model, wrap
from .optimizer import AdamW, fused_enabled  # mlx.optimizers.AdamW with a fused native CPU update
from mlx_rnn.core.schedule import lr_at

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


@dataclass
class EpochResult:
    """What one training epoch did. ``time_s`` is synchronised wall time in seconds."""

    mean_loss: float
    steps: int
    time_s: float
    nonfinite_step: int | None
    interrupted: bool


class Trainer:
    """Trains one model (classifier or LM) with Adam/AdamW, gradient clipping and a schedule.

    Args:
        config: the run configuration (see :mod:`mlx_rnn.core.config`); ``config["seed"]``
            seeds initialisation and dropout.
        train: encoded training data: ``(x int32 (N, T), y int32 (N,))`` for "classify",
            int32 ids (n,) for "lm".
    """

    def __init__(self, config: dict, train):
        self.config = config
        self.task = config["task"]
        self.dist = distributed.current()  # data-parallel rank and world size (1: one process)
        mx.random.seed(config["seed"])
        self.model = build_model(config)
        mx.eval(self.model.parameters())
        parallel.setup_model(self.model, config, self.dist)
        self.optimizer = AdamW(learning_rate=config["lr"], betas=[0.9, 0.999], eps=1e-8,
                                     weight_decay=config["weight_decay"], bias_correction=True)
        self.optimizer.init(self.model.trainable_parameters())
        self.train_data = train
        # classify: the vowel label after every prefix of each window (the prefix loss; batching.prefix_labels)
        self.prefix_y = prefix_labels(train[0], config["vocab"]) if self.task == "classify" else None
        self.global_step = 0
        self.carry = None  # LM hidden state carried between chunks (stateful truncated BPTT)
        self.steps_per_epoch = self._steps_per_epoch()
        self._build_step()

    # ----- the compiled step -------------------------------------------------
    def _build_step(self):
        model, optimizer, clip = self.model, self.optimizer, self.config["clip_norm"]
        state = [model.state, optimizer.state, mx.random.state]
        reduce = parallel.gradient_reducer(self.dist)  # identity for one process

        def apply(grads):
            if clip > 0:
                grads, _ = optim.clip_grad_norm(grads, clip)
            optimizer.update(model, grads)

        if self.task == "classify":
            prefix_weight = float(self.config.get("prefix_weight", 0.0))

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

    def _steps_per_epoch(self) -> int:
        cfg = self.config  # global batch = batch_size x ranks; LM offsets may cost one chunk
        return distributed.steps_per_epoch(self.task, self.train_data, cfg["batch_size"], cfg["seq_len"],
                                           self.dist.world_size)

    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config["epochs"]

    def _zero_carry(self):
        cfg = self.config
        z = mx.zeros((cfg["num_layers"], cfg["batch_size"], cfg["hidden_size"]))
        return (z, z) if cfg.get("cell", "lstm") == "lstm" else (z,)

    # ----- one epoch ----------------------------------------------------------
    def train_epoch(self, epoch: int, start_step: int = 0, should_stop=lambda: False,
                    progress=None, check_every: int = 50) -> EpochResult:
        """Train one epoch from batch ``start_step`` (non-zero when resuming mid-epoch).

        ``should_stop()`` is polled after each step (a Python flag set by a signal
        handler); ``progress`` (a tqdm bar or None) is advanced once per batch.
        """
        cfg = self.config
        self.model.train()
        if self.task == "classify":
            x_all, y_all = self.train_data
            # this rank's share of the shared plan: [(indices, gradient weight)]
            batches = distributed.classify_plan(len(y_all), cfg["batch_size"], cfg["seed"], epoch,
                                                self.dist.rank, self.dist.world_size)
            batches = batches[:self.steps_per_epoch]
        else:
            streams = distributed.lm_shard_streams(self.train_data, cfg["batch_size"], cfg["seq_len"], cfg["seed"],
                                                   epoch, self.dist.rank, self.dist.world_size)
            if start_step == 0 or self.carry is None:
                self.carry = self._zero_carry()
        loss_sum = mx.array(0.0)
        bad = mx.array(-1)
        mx.eval(self._state)
        synchronize()
        self.dist.arm()  # watchdog for hung peers (distributed only)
        t0 = time.perf_counter()
        steps = 0
        nonfinite = None
        interrupted = False
        for k in range(start_step, self.steps_per_epoch):
            self.optimizer.learning_rate = mx.array(
                lr_at(self.global_step, cfg["lr"], self.total_steps(), cfg["warmup_steps"], cfg["lr_schedule"]))
            if self.task == "classify":
                idx, weight = batches[k]
                loss = self._step(mx.array(x_all[idx]), mx.array(y_all[idx]), mx.array(self.prefix_y[idx]),
                                  *parallel.weight_args(self.dist, weight))
            else:
                xb, yb = lm_chunk(streams, k, cfg["seq_len"])
                loss, self.carry = self._step(mx.array(xb), mx.array(yb), self.carry,
                                              *parallel.weight_args(self.dist, 1.0 / self.dist.world_size))
            loss_sum = loss_sum + loss
            bad = mx.where((bad < 0) & ~mx.isfinite(loss), k, bad)
            mx.async_eval(self._state, loss_sum, bad, self.carry)
            steps += 1
            self.global_step += 1
            self.dist.after_step(self.global_step)
            if progress is not None:
                progress.update(1)
            if (steps % check_every == 0 or k == self.steps_per_epoch - 1) and int(bad.item()) >= 0:
                nonfinite = int(bad.item())
                break
            if self.dist.should_stop(should_stop, steps, k == self.steps_per_epoch - 1, check_every):
                interrupted = True
                break
        mx.eval(self._state, loss_sum)
        synchronize()
        self.dist.disarm()
        time_s = time.perf_counter() - t0
        if nonfinite is None and int(bad.item()) >= 0:
            nonfinite = int(bad.item())
        self.epoch_step = start_step + steps
        return EpochResult(float(loss_sum.item()) / max(steps, 1), steps, time_s, nonfinite, interrupted)

    # ----- state in and out ---------------------------------------------------
    def wrapper(self):
        """The API wrapper over the current model (switches it to eval mode)."""
        return wrap(self.model, self.config)

    def weights(self) -> dict:
        return self.model.weights()

    def load_weights(self, weights: dict) -> None:
        self.model.load_numpy(weights)

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
    """One line for run headers: the BLAS MLX actually uses (detected), the recurrence path
    and the optimizer update (native primitives or Python-level ops, and why)."""
    adamw = "fused native AdamW" if fused_enabled() else "mlx.optimizers AdamW"
    return f"{_blas.describe()}; recurrence: {recurrence.describe()}; {adamw}"
