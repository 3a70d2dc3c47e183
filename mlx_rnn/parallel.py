"""Data-parallel training on MLX (``mx.distributed``); mirrored by ``torch_ref/parallel.py``.

The framework-neutral half (sharding, agreements, watchdog) is :mod:`mlx_rnn.core.distributed`.
Start a run with ``mlx.launch`` (ring back end over TCP on one or several Macs, or
MPI/JACCL/NCCL as MLX supports them)::

    .venv/bin/mlx.launch -n 2 --backend ring -- python scripts/train_mlx.py --distributed ...

``mlx.launch`` stops the other ranks when one fails but itself exits 0;
``scripts/launch_mlx.py`` (:mod:`mlx_rnn.tools.launch`) is the same launcher with an
exit status that says so.

The gradient reduction runs inside the compiled training step: the gradients
and the loss are flattened into one vector, scaled by this rank's weight
``n_r / n_global`` and summed over ranks with one ``mx.distributed.all_sum``,
so every rank applies the same update and sees the same (global) loss.
"""

from __future__ import annotations

import os

import numpy as np

from . import _blas, device  # noqa: F401  (device before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from mlx_rnn import native
from mlx_rnn.layers import log_softmax
from mlx_rnn.core import distributed, switches
from mlx_rnn.core.config import RunConfig
from mlx_rnn.core.distributed import DistInfo


def _backend_name() -> str:
    if os.environ.get("MLX_HOSTFILE") or os.environ.get("MLX_RING_VERBOSE"):
        return "ring"
    if os.environ.get("MLX_IBV_DEVICES"):
        return "jaccl"
    if os.environ.get("NCCL_HOST_IP"):
        return "nccl"
    if os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE"):
        return "mpi"
    return "mlx"


def init_distributed(device: str = "auto", timeout: float | None = None) -> DistInfo:
    """``mx.distributed.init()`` and this process's :class:`DistInfo` (made current); ``timeout``:
    seconds a rank waits for its peers in a step (None: the default, 0: never; ``device`` is
    MLX's choice already).

    Started without a launcher (no ``MLX_HOSTFILE``/``MLX_RANK``...), MLX gives a group of
    one and the run is an ordinary single-process run (with a note on stderr).
    """
    hostfile = os.environ.get("MLX_HOSTFILE")
    if hostfile and os.path.isfile(hostfile) and not open(hostfile).read().strip():
        world, rank = 1, 0  # mlx.launch -n 1 writes an empty hostfile, which MLX cannot parse
    else:
        try:
            group = mx.distributed.init(strict=False)
        except RuntimeError as e:
            raise ValueError(f"--distributed: MLX could not join the process group ({str(e).strip()})") from None
        world, rank = group.size(), group.rank()
    fault = distributed.parse_fault(switches.read().fault)
    if world == 1:
        import sys

        print("note: --distributed, but this is a group of one process (start it with mlx.launch -n N "
              "--backend ring -- python scripts/train_mlx.py --distributed ...)", file=sys.stderr, flush=True)
        return distributed.set_current(DistInfo())

    def all_sum(v: np.ndarray) -> np.ndarray:
        with mx.stream(mx.cpu):  # float64 lives on the CPU (Metal has no float64)
            out = mx.distributed.all_sum(mx.array(v, dtype=mx.float64), group=group)
            mx.eval(out)
        return np.array(out, dtype=np.float64)

    info = DistInfo(rank=rank, world_size=world, local_rank=int(os.environ.get("MLX_LOCAL_RANK", rank)),
                    backend=_backend_name(), all_sum=all_sum,
                    timeout_s=distributed.DEFAULT_TIMEOUT_S if timeout is None else timeout, fault=fault)
    _share_cores(rank, hostfile)
    return distributed.set_current(info)


def _ranks_on_this_host(rank: int, hostfile: str | None) -> int:
    """How many ranks of the ring hostfile share this rank's IP address (1 when unknown)."""
    import json

    try:
        hosts = json.loads(open(hostfile).read()) if hostfile else None
        ip = lambda entry: entry[0].rsplit(":", 1)[0]  # noqa: E731  (["ip:port", ...] per rank)
        return max(1, sum(ip(h) == ip(hosts[rank]) for h in hosts))
    except (OSError, ValueError, TypeError, IndexError, KeyError, AttributeError):
        return 1


def _share_cores(rank: int, hostfile: str | None) -> None:
    """Give each of the k ranks on one machine cores/k OpenBLAS threads and native-kernel threads
    (Linux CPU back end).

    Left alone, every rank starts as many BLAS threads as the machine has cores and k ranks
    oversubscribe the cores k-fold (measured on 2 cores: 4x slower). ``OPENBLAS_NUM_THREADS``
    set by the user wins; on macOS (Accelerate) nothing is done. torchrun does the same for
    PyTorch with ``OMP_NUM_THREADS=1``.
    """
    if os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS"):
        return
    local = _ranks_on_this_host(rank, hostfile)
    if local > 1:
        share = max(1, (os.cpu_count() or 1) // local)
        _blas.set_num_threads(share)
        if native.available() and switches.read().num_threads is None:
            native.ext().set_num_threads(share)  # the native kernels' threads likewise


def shutdown() -> None:
    """Nothing to tear down: MLX's distributed group needs no explicit end (the twin of
    ``torch_ref.parallel.shutdown``, which destroys PyTorch's process group)."""


def setup_model(model, config: RunConfig, dist: DistInfo) -> None:
    """Before training: every rank takes rank 0's initial weights (one all_sum), and dropout
    gets a per-rank seed. Nothing for a single process."""
    if not dist.enabled:
        return
    flat = tree_flatten(model.parameters())
    vec = mx.concatenate([v.reshape(-1) for _, v in flat])
    vec = mx.distributed.all_sum(vec if dist.is_main else mx.zeros_like(vec))
    parts = mx.split(vec, np.cumsum([v.size for _, v in flat])[:-1].tolist())
    model.update(tree_unflatten([(k, p.reshape(v.shape)) for (k, v), p in zip(flat, parts)]))
    mx.eval(model.parameters())
    mx.random.seed(distributed.rank_seed(config.seed, dist.rank))


def gradient_reducer(dist: DistInfo):
    """``reduce(loss, grads, *weight) -> (loss, grads)`` for the compiled step.

    One process: the identity (the step takes no weight). Distributed: the weighted sum over
    ranks ``sum_r w_r * (loss_r, grads_r)`` with one ``all_sum`` of one flat vector.
    """
    if not dist.enabled:
        return lambda loss, grads: (loss, grads)

    def reduce(loss, grads, weight):
        flat = tree_flatten(grads)
        big = mx.concatenate([g.reshape(-1) for _, g in flat] + [loss.reshape(1).astype(flat[0][1].dtype)])
        big = mx.distributed.all_sum(big * weight)
        parts = mx.split(big, np.cumsum([g.size for _, g in flat]).tolist())
        grads = tree_unflatten([(k, p.reshape(g.shape)) for (k, g), p in zip(flat, parts[:-1])])
        return parts[-1].reshape(()).astype(loss.dtype), grads

    return reduce


def weight_args(dist: DistInfo, weight: float) -> tuple:
    """The extra step argument: ``()`` for one process, ``(mx.array(weight),)`` distributed."""
    return (mx.array(weight, dtype=mx.float32),) if dist.enabled else ()


def stream_scorer(wrapper):
    """``score(x, y, state) -> (float64 (B,) sums of log P(y), state)`` for batched evaluation
    (:func:`mlx_rnn.core.corpus.evaluate_split`); x, y int32 (B, T); state None or (h, c)."""
    model = wrapper.model
    model.eval()

    def score(x, y, state):
        logits, state = model(mx.array(x), state)
        lp = log_softmax(logits.astype(mx.float32))
        picked = mx.take_along_axis(lp, mx.array(y)[..., None], axis=-1)[..., 0]
        sums = picked.sum(axis=1)
        mx.eval(sums, state)
        return np.array(sums, dtype=np.float64), state

    return score
