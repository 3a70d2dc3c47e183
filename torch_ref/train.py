"""PyTorch training, mirror of ``mlx_rnn/train.py`` (same Trainer API and batches).

The epoch control (timing, the device-side non-finite marker, progress, interruption)
lives once, in :mod:`mlx_rnn.run.epoch`; checkpoints and reporting around it in
:mod:`mlx_rnn.run`. Here: the step and how one epoch's batches reach the device.
"""

from __future__ import annotations

import numpy as np
import torch

from mlx_rnn.core import batching, distributed
from mlx_rnn.core.batching import lm_chunk, prefix_labels
from mlx_rnn.core.config import RunConfig
from mlx_rnn.run.epoch import EpochLoop

from . import parallel
from .device import current_device, select_device, synchronize  # noqa: F401  (the framework API)
from .device import describe_precision, precision, set_tf32  # noqa: F401  (the framework API)
from .models import build_model, wrap

FRAMEWORK = "torch"


def framework_version() -> str:
    return torch.__version__


def describe_backend() -> str:
    """One line for run headers: threads and the BLAS/LAPACK torch was built with."""
    import re

    found = re.search(r"BLAS_INFO=([\w\-.]+)", torch.__config__.show())
    blas = found.group(1) if found else "unknown"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, BLAS {blas}"


class Trainer(EpochLoop):
    """Mirror of :class:`mlx_rnn.train.Trainer` (AdamW, gradient clipping, schedule)."""

    def __init__(self, config: RunConfig, train):
        self.config = config
        self.task = config.task
        self.dist = distributed.current()  # data-parallel rank and world size (1: one process)
        torch.manual_seed(config.seed)
        self.model = build_model(config).to(current_device())
        self._loss_fn = parallel.setup_model(self.model, config, self.dist)  # model.loss, or its DDP wrapper
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                           eps=1e-8, weight_decay=config.weight_decay)
        self.train_data = train
        # classify: the vowel label after every prefix of each window (the prefix loss; batching.prefix_labels)
        self.prefix_y = prefix_labels(train[0], config.vocab) if self.task == "classify" else None
        self.global_step = 0
        self.carry = None
        self._init_loop()

    def _step(self, x, y, carry=None, weight=1.0, prefix_y=None):
        clip = self.config.clip_norm
        self.optimizer.zero_grad(set_to_none=True)
        if self.task == "classify":
            loss = self._loss_fn(x, y, prefix_y, float(self.config.prefix_weight or 0.0))
        else:
            loss, carry = self._loss_fn(x, y, carry)
        parallel.backward(loss, weight, self.dist)  # distributed: DDP reduces sum_r weight_r * grad_r
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        if carry is not None:
            carry = tuple(t.detach() for t in carry)
        return parallel.global_loss(loss.detach(), weight, self.dist), carry

    # ----- one epoch's batches (the epoch control: mlx_rnn.run.epoch) --------------
    def _epoch_batches(self, epoch: int):
        cfg, dist, dev = self.config, self.dist, current_device()
        if self.task == "classify":
            x_all = torch.from_numpy(self.train_data[0].astype(np.int64)).to(dev)
            y_all = torch.from_numpy(self.train_data[1].astype(np.int64)).to(dev)
            prefix_all = torch.from_numpy(self.prefix_y).to(dev)
            # this rank's share of the shared plan: [(indices, gradient weight)]
            batches = batching.classify_plan(len(self.train_data[1]), cfg.batch_size, cfg.seed, epoch,
                                                dist.rank, dist.world_size)[:self.steps_per_epoch]

            def run(k):
                idx, weight = batches[k]
                idx = torch.from_numpy(idx).to(dev)
                return self._step(x_all[idx], y_all[idx], weight=weight, prefix_y=prefix_all[idx])[0]
            return run
        streams = parallel.device_streams(batching.lm_shard_streams(
            self.train_data, cfg.batch_size, cfg.seq_len, cfg.seed, epoch, dist.rank, dist.world_size), dev)

        def run(k):
            xb, yb = lm_chunk(streams, k, cfg.seq_len)
            loss, self.carry = self._step(xb, yb, self.carry, weight=1.0 / dist.world_size)
            return loss
        return run

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _zeros(self, shape):
        return torch.zeros(shape, device=current_device())

    def _markers(self):
        dev = current_device()
        return torch.zeros((), device=dev), torch.full((), -1, dtype=torch.int64, device=dev)

    def _accumulate(self, loss_sum, bad, loss, k):
        loss_sum += loss
        bad = torch.where((bad < 0) & ~torch.isfinite(loss), torch.tensor(k, device=loss_sum.device), bad)
        return loss_sum, bad

    def _settle(self, *arrays) -> None:
        synchronize()

    def wrapper(self):
        """The API wrapper over the current model (switches it to eval mode)."""
        return wrap(self.model, self.config)

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
        if current_device().type == "cuda":  # dropout on the GPU draws from the device's own generator
            out["rng.cuda"] = torch.cuda.get_rng_state(current_device()).numpy().copy()
        elif current_device().type == "mps":
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
                current_device() if field != "step" else "cpu")
        for p, st in state.items():
            self.optimizer.state[p] = st
        torch.set_rng_state(torch.from_numpy(tensors["rng.torch"].copy()))
        if "rng.cuda" in tensors and current_device().type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(tensors["rng.cuda"].copy()), current_device())
        elif "rng.mps" in tensors and current_device().type == "mps":
            torch.mps.set_rng_state(torch.from_numpy(tensors["rng.mps"].copy()))
        if "carry.h" in tensors:
            self.carry = tuple(torch.from_numpy(tensors[k].copy()).to(current_device())
                               for k in ("carry.h", "carry.c") if k in tensors)
