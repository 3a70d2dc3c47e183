"""PyTorch training, mirror of ``mlx_rnn/train.py`` (same Trainer API and batches).

The epoch loop, checkpoints and reporting around it live once, in
:mod:`mlx_rnn.run.runner`. Inside the batch loop nothing is read back to the host:
the loss sum and the "first non-finite step" marker stay on the device and are
read every ``check_every`` steps and at the end of the epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from mlx_rnn.core import distributed
from mlx_rnn.core.batching import classify_batches, lm_chunk, lm_num_chunks, lm_streams, prefix_labels  # noqa: F401
from mlx_rnn.core.schedule import lr_at

from . import parallel
from .models import build_model, wrap

FRAMEWORK = "torch"
_DEVICE = torch.device("cpu")


def framework_version() -> str:
    return torch.__version__


def current_device() -> torch.device:
    """The device chosen by :func:`select_device` (CPU until one is chosen)."""
    return _DEVICE


def select_device(name: str = "auto") -> str:
    """Choose the device: auto (MPS, then CUDA, then CPU), mps, cuda or cpu; returns its name.

    Raises:
        ValueError: the asked-for device is not available.
    """
    global _DEVICE
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        name = "mps" if has_mps else "cuda" if torch.cuda.is_available() else "cpu"
    if name == "mps" and not has_mps:
        raise ValueError("--device mps: MPS is not available in this PyTorch build/machine")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available in this PyTorch build/machine")
    if name not in ("mps", "cuda", "cpu"):
        raise ValueError(f"unknown torch device {name!r} (auto, mps, cuda, cpu)")
    _DEVICE = torch.device(f"cuda:{distributed.current().local_rank}" if name == "cuda" else name)
    return str(_DEVICE)


def synchronize() -> None:
    """Wait for queued device work (used around timers)."""
    if _DEVICE.type == "cuda":
        torch.cuda.synchronize()
    elif _DEVICE.type == "mps":
        torch.mps.synchronize()


def describe_backend() -> str:
    """One line for run headers: threads and the BLAS/LAPACK torch was built with."""
    import re

    found = re.search(r"BLAS_INFO=([\w\-.]+)", torch.__config__.show())
    blas = found.group(1) if found else "unknown"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS {blas}"


@dataclass
class EpochResult:
    """What one training epoch did. ``time_s`` is synchronised wall time in seconds."""

    mean_loss: float
    steps: int
    time_s: float
    nonfinite_step: int | None
    interrupted: bool


class Trainer:
    """Mirror of :class:`mlx_rnn.train.Trainer` (AdamW, gradient clipping, schedule)."""

    def __init__(self, config: dict, train):
        self.config = config
        self.task = config["task"]
        self.dist = distributed.current()  # data-parallel rank and world size (1: one process)
        torch.manual_seed(config["seed"])
        self.model = build_model(config).to(_DEVICE)
        self._loss_fn = parallel.setup_model(self.model, config, self.dist)  # model.loss, or its DDP wrapper
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config["lr"], betas=(0.9, 0.999),
                                           eps=1e-8, weight_decay=config["weight_decay"])
        self.train_data = train
        # classify: the vowel label after every prefix of each window (the prefix loss; batching.prefix_labels)
        self.prefix_y = prefix_labels(train[0], config["vocab"]) if self.task == "classify" else None
        self.global_step = 0
        self.carry = None
        self.steps_per_epoch = self._steps_per_epoch()

    def _step(self, x, y, carry=None, weight=1.0, prefix_y=None):
        clip = self.config["clip_norm"]
        self.optimizer.zero_grad(set_to_none=True)
        if self.task == "classify":
            loss = self._loss_fn(x, y, prefix_y, float(self.config.get("prefix_weight", 0.0)))
        else:
            loss, carry = self._loss_fn(x, y, carry)
        parallel.backward(loss, weight, self.dist)  # distributed: DDP reduces sum_r weight_r * grad_r
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        if carry is not None:
            carry = tuple(t.detach() for t in carry)
        return parallel.global_loss(loss.detach(), weight, self.dist), carry

    def _steps_per_epoch(self) -> int:
        cfg = self.config  # global batch = batch_size x ranks; LM offsets may cost one chunk
        return distributed.steps_per_epoch(self.task, self.train_data, cfg["batch_size"], cfg["seq_len"],
                                           self.dist.world_size)

    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config["epochs"]

    def _zero_carry(self):
        cfg = self.config
        z = torch.zeros((cfg["num_layers"], cfg["batch_size"], cfg["hidden_size"]), device=_DEVICE)
        return (z, z.clone()) if cfg.get("cell", "lstm") == "lstm" else (z,)

    def train_epoch(self, epoch: int, start_step: int = 0, should_stop=lambda: False,
                    progress=None, check_every: int = 50) -> EpochResult:
        """Train one epoch from batch ``start_step``; see :meth:`mlx_rnn.train.Trainer.train_epoch`."""
        cfg = self.config
        self.model.train()
        if self.task == "classify":
            x_all = torch.from_numpy(self.train_data[0].astype(np.int64)).to(_DEVICE)
            y_all = torch.from_numpy(self.train_data[1].astype(np.int64)).to(_DEVICE)
            prefix_all = torch.from_numpy(self.prefix_y).to(_DEVICE)
            # this rank's share of the shared plan: [(indices, gradient weight)]
            batches = distributed.classify_plan(len(self.train_data[1]), cfg["batch_size"], cfg["seed"], epoch,
                                                self.dist.rank, self.dist.world_size)
            batches = batches[:self.steps_per_epoch]
        else:
            streams = parallel.device_streams(distributed.lm_shard_streams(
                self.train_data, cfg["batch_size"], cfg["seq_len"], cfg["seed"], epoch,
                self.dist.rank, self.dist.world_size), _DEVICE)
            if start_step == 0 or self.carry is None:
                self.carry = self._zero_carry()
        loss_sum = torch.zeros((), device=_DEVICE)
        bad = torch.full((), -1, dtype=torch.int64, device=_DEVICE)
        synchronize()
        self.dist.arm()  # watchdog for hung peers (distributed only)
        t0 = time.perf_counter()
        steps = 0
        nonfinite = None
        interrupted = False
        for k in range(start_step, self.steps_per_epoch):
            lr = lr_at(self.global_step, cfg["lr"], self.total_steps(), cfg["warmup_steps"], cfg["lr_schedule"])
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if self.task == "classify":
                idx, weight = batches[k]
                idx = torch.from_numpy(idx).to(_DEVICE)
                loss, _ = self._step(x_all[idx], y_all[idx], weight=weight, prefix_y=prefix_all[idx])
            else:
                xb, yb = lm_chunk(streams, k, cfg["seq_len"])
                loss, self.carry = self._step(xb, yb, self.carry, weight=1.0 / self.dist.world_size)
            loss_sum += loss
            bad = torch.where((bad < 0) & ~torch.isfinite(loss), torch.tensor(k, device=_DEVICE), bad)
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
        synchronize()
        self.dist.disarm()
        time_s = time.perf_counter() - t0
        if nonfinite is None and int(bad.item()) >= 0:
            nonfinite = int(bad.item())
        self.epoch_step = start_step + steps
        return EpochResult(float(loss_sum.item()) / max(steps, 1), steps, time_s, nonfinite, interrupted)

    def wrapper(self):
        """The API wrapper over the current model (switches it to eval mode)."""
        return wrap(self.model, self.config)

    def weights(self) -> dict:
        return self.model.weights()

    def load_weights(self, weights: dict) -> None:
        self.model.load_numpy(weights)

    def training_state(self) -> dict:
        """Optimizer moments, step, RNG state and LM carry as ``{name: numpy array}``."""
        out = {}
        names = {id(p): n for n, p in self.model.named_parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                for key, val in st.items():
                    out[f"optimizer.{names[id(p)]}.{key}"] = val.detach().cpu().numpy().copy().reshape(val.shape)
        out["rng.torch"] = torch.get_rng_state().numpy().copy()
        if _DEVICE.type == "cuda":  # dropout on the GPU draws from the device's own generator
            out["rng.cuda"] = torch.cuda.get_rng_state(_DEVICE).numpy().copy()
        elif _DEVICE.type == "mps":
            out["rng.mps"] = torch.mps.get_rng_state().numpy().copy()
        for name, value in zip(("carry.h", "carry.c"), self.carry or ()):
            out[name] = value.detach().cpu().numpy().copy()
        return out

    def load_training_state(self, tensors: dict) -> None:
        params = dict(self.model.named_parameters())
        state = {}
        for key, val in tensors.items():
            if not key.startswith("optimizer."):
                continue
            pname, field = key[len("optimizer."):].rsplit(".", 1)
            state.setdefault(params[pname], {})[field] = torch.from_numpy(val.copy()).to(
                _DEVICE if field != "step" else "cpu")
        for p, st in state.items():
            self.optimizer.state[p] = st
        torch.set_rng_state(torch.from_numpy(tensors["rng.torch"].copy()))
        if "rng.cuda" in tensors and _DEVICE.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(tensors["rng.cuda"].copy()), _DEVICE)
        elif "rng.mps" in tensors and _DEVICE.type == "mps":
            torch.mps.set_rng_state(torch.from_numpy(tensors["rng.mps"].copy()))
        if "carry.h" in tensors:
            self.carry = tuple(torch.from_numpy(tensors[k].copy()).to(_DEVICE)
                               for k in ("carry.h", "carry.c") if k in tensors)
