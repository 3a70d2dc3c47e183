"""Data-parallel training on PyTorch (DDP); mirror of ``mlx_rnn/parallel.py``.

Start with ``torchrun --nproc-per-node N scripts/train_torch.py --distributed ...``
(gloo on the CPU, NCCL on CUDA). The training step runs through
``DistributedDataParallel`` wrapping the model's loss; the wrappers, evaluation and
checkpoints use the underlying module. Sharding, agreements and the watchdog are
the framework-neutral :mod:`mlx_rnn.core.distributed`; torchrun's elastic agent stops the
other workers and exits non-zero when one dies, and ``timeout=`` of
``init_process_group`` bounds every collective.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as tdist
import torch.nn.functional as F

from mlx_rnn.core import distributed, switches
from mlx_rnn.core.config import RunConfig
from mlx_rnn.core.distributed import DistInfo


def init_distributed(device: str = "auto", timeout: float | None = None) -> DistInfo:
    """``init_process_group`` from torchrun's environment; this process's :class:`DistInfo` (made current).
    ``device``: the ``--device`` asked for; ``timeout``: seconds a rank waits for its peers (None: the
    default, 0: never).

    Without torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR...) the run is an ordinary
    single-process run (with a note on stderr).

    Raises:
        ValueError: ``--device mps`` (gloo cannot reduce MPS tensors; use --device cpu).
    """
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        print("note: --distributed, but this is a group of one process (start it with torchrun "
              "--nproc-per-node N scripts/train_torch.py --distributed ...)", file=sys.stderr, flush=True)
        return distributed.set_current(DistInfo())
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if device == "mps" or (device == "auto" and has_mps and not torch.cuda.is_available()):
        raise ValueError("--distributed with PyTorch runs on CUDA (NCCL) or the CPU (gloo), not MPS; "
                         "pass --device cpu")
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    timeout = distributed.DEFAULT_TIMEOUT_S if timeout is None else timeout
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    tdist.init_process_group(backend, timeout=timedelta(seconds=timeout if timeout > 0 else 1800))
    atexit.register(_destroy)
    reduce_device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")

    def all_sum(v: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(reduce_device)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t.cpu().numpy()

    info = DistInfo(rank=tdist.get_rank(), world_size=tdist.get_world_size(), local_rank=local_rank,
                    backend=backend, all_sum=all_sum, timeout_s=timeout,
                    fault=distributed.parse_fault(switches.read_one("fault")))
    return distributed.set_current(info)


def _destroy(barrier: bool = False) -> None:
    """Tear the process group down while the interpreter is still whole (also registered with atexit).

    Why (the abort "terminate called without an active exception" at exit): a DDP module owns
    the gloo process group (its reducer holds a reference), so ``destroy_process_group`` alone only
    unregisters the group; the ProcessGroupGloo object, its C++ worker threads and their pending
    work items (which hold tensors with Python references) lived on until interpreter
    finalization, where releasing them needs the GIL of an interpreter being torn down and the
    C++ runtime calls ``std::terminate`` (SIGABRT), on whichever rank got there last. So: stop
    the watchdog thread, after a normal end wait for every rank (``barrier``: no collective still
    in flight), collect the dead objects (the DDP module of a finished trainer, reference cycles
    included), then destroy the group and collect again, all before finalization starts.
    """
    if not (tdist.is_available() and tdist.is_initialized()):
        return
    info = distributed.current()
    if info.watchdog is not None:
        info.watchdog.close()
    if barrier:  # (only after a normal end: a failed rank's peers may be inside another collective)
        try:
            tdist.barrier()
        except Exception:  # noqa: BLE001  (a peer already gone: nothing to wait for)
            pass
    gc.collect()
    try:
        tdist.destroy_process_group()
    except Exception:  # noqa: BLE001  (a peer already gone; we are exiting anyway)
        pass
    gc.collect()


def shutdown() -> None:
    """End this rank's part in the process group now (see :func:`_destroy`); a no-op when not joined.
    Call it after the last collective, once the trainer (and its DDP module) is no longer used."""
    _destroy(barrier=True)


class _Loss(torch.nn.Module):
    """The model's ``loss`` as a forward pass, so that DistributedDataParallel can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.loss(*args)


def setup_model(model, config: RunConfig, dist: DistInfo):
    """The training step's loss function: ``model.loss`` for one process; distributed, the
    model's loss wrapped in DDP (which takes rank 0's initial weights) and a per-rank dropout seed."""
    if not dist.enabled:
        return model.loss
    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = next(model.parameters()).device
    ddp = DDP(_Loss(model), device_ids=[dev.index] if dev.type == "cuda" else None)
    torch.manual_seed(distributed.rank_seed(config.seed, dist.rank))
    return ddp


def backward(loss, weight: float, dist: DistInfo) -> None:
    """``loss.backward()``; distributed, scaled so that DDP's average is ``sum_r w_r * grad_r``."""
    if not dist.enabled:
        loss.backward()
    else:
        (loss * (weight * dist.world_size)).backward()


def global_loss(loss, weight: float, dist: DistInfo):
    """The global batch's mean loss (``sum_r w_r * loss_r``) on every rank; ``loss`` for one process."""
    if not dist.enabled:
        return loss
    t = (loss * weight).reshape(1)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.reshape(())


class _DeviceStreams:
    """Lazily read LM streams whose chunks come back as int64 tensors on ``device``."""

    def __init__(self, streams, device):
        self.streams, self.device = streams, device
        self.shape = streams.shape

    def __getitem__(self, key):
        return torch.from_numpy(self.streams[key].astype(np.int64)).to(self.device)


def device_streams(streams, device):
    """The epoch's LM streams on ``device``: the whole array at once, or chunk by chunk when read lazily."""
    if isinstance(streams, np.ndarray):
        return torch.from_numpy(streams.astype(np.int64)).to(device)
    return _DeviceStreams(streams, device)


def stream_scorer(wrapper):
    """``score(x, y, state) -> (float64 (B,) sums of log P(y), state)``; see ``mlx_rnn.parallel.stream_scorer``."""
    model = wrapper.model
    model.eval()
    dev = model.device

    @torch.no_grad()
    def score(x, y, state):
        if state is not None:  # a slice of another batch's state (corpus tail)
            state = tuple(s.contiguous() for s in state)
        logits, state = model(torch.from_numpy(np.asarray(x, dtype=np.int64)).to(dev), state)
        lp = F.log_softmax(logits.float(), dim=-1)
        picked = lp.gather(-1, torch.from_numpy(np.asarray(y, dtype=np.int64)).to(dev)[..., None])[..., 0]
        return picked.sum(dim=1).double().cpu().numpy(), state

    return score
