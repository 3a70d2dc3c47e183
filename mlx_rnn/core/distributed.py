"""Data-parallel training, the framework-neutral half (numpy only).

Both trainers run data-parallel the same way (``--distributed``; started by
``mlx.launch`` for MLX, by ``torchrun`` for PyTorch):

- every rank builds the *same* shared batching plan of :mod:`mlx_rnn.core.batching`
  with the global batch ``batch_size * world_size`` and takes its own slice of
  it (:func:`classify_plan`, :func:`lm_shard_streams`): rank ``r`` takes
  examples ``[r*B:(r+1)*B]`` of every global classification batch, and rows
  ``[r*B:(r+1)*B]`` of the global LM streams (carrying its own LSTM state);
- gradients are combined as the weighted sum ``sum_r w_r * grad_r`` with
  ``w_r = n_r / n_global`` (``1 / world_size`` for full batches), which is exactly
  the gradient of the mean loss over the global batch, so 2 ranks with batch B
  train like 1 process with batch 2B;
- only rank 0 prints, writes checkpoints and JSON; all ranks evaluate the same
  weights, so evaluation figures are identical everywhere.

This module holds what does not depend on the framework: :class:`DistInfo`
(rank, world size and one framework-supplied ``all_sum`` of a float64 vector,
from which every small agreement is built), the sharding of the batching plans,
rank-0 printing, a watchdog for hung peers and a test-only fault injector. The
framework halves are ``mlx_rnn/parallel.py`` and ``torch_ref/parallel.py``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import switches
from .batching import classify_batches, epoch_rng, lm_streams

#: Exit code of a rank whose watchdog fired (a peer hung or vanished); docs/design.md's "1".
EXIT_PEER_LOST = 1
#: Default seconds a rank may wait inside one step or agreement before the watchdog ends it.
DEFAULT_TIMEOUT_S = 300.0
#: Test-only fault injection: ``RANK:STEP:MODE`` (MODE exit | kill | hang), e.g. ``1:3:exit``.
FAULT_ENV = switches.FAULT  # (read by mlx_rnn.core.switches)


class Watchdog:
    """Ends the process when no progress is reported for ``timeout_s`` while armed.

    A dead peer is normally noticed by the transport (MLX's ring back end raises
    "connection to a peer was lost"; gloo raises too), but a peer that hangs, or a
    machine that vanishes without closing its sockets, leaves the others blocked in a
    collective forever. The watchdog is armed around the training loop and every
    agreement; a thread checks the time since the last :meth:`beat` and, past the
    timeout, prints one line and ``os._exit``\\ s so that the launcher (which stops the
    other ranks when one fails) ends the run. MLX and PyTorch release the GIL while
    they wait, so the thread runs.
    """

    def __init__(self, timeout_s: float, rank: int):
        self.timeout_s = float(timeout_s)
        self.rank = rank
        self._last = time.monotonic()
        self._armed = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        """Never fire again (the fault injector's "hang" mode: a frozen process runs no watchdog)."""
        self._stopped = True

    def close(self) -> None:
        """Stop the thread and wait for it (before the process tears down its process group)."""
        self._stopped = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def beat(self) -> None:
        self._last = time.monotonic()

    def arm(self) -> None:
        with self._lock:
            if self._thread is None and self.timeout_s > 0:
                self._thread = threading.Thread(target=self._run, name="mlx-rnn-watchdog", daemon=True)
                self._thread.start()
            self._armed += 1
        self.beat()

    def disarm(self) -> None:
        with self._lock:
            self._armed = max(0, self._armed - 1)

    @contextmanager
    def armed(self):
        self.arm()
        try:
            yield self
        finally:
            self.disarm()

    def _run(self) -> None:
        while True:
            time.sleep(min(1.0, max(self.timeout_s / 10, 0.05)))
            if self._stopped:
                return
            if self._armed > 0 and time.monotonic() - self._last > self.timeout_s:
                print(f"error: rank {self.rank}: no progress for {self.timeout_s:g} s in a distributed step "
                      "(a peer hung or is unreachable); exiting (see --dist-timeout)", file=sys.stderr, flush=True)
                os._exit(EXIT_PEER_LOST)


@dataclass
class DistInfo:
    """Who this process is in a data-parallel run (world size 1: not distributed).

    Attributes:
        rank, world_size, local_rank: as the launcher set them.
        backend: e.g. "ring", "gloo", "nccl"; "none" for a single process.
        all_sum: float64 vector -> its sum over all ranks (the same on every rank),
            supplied by the framework (``mx.distributed.all_sum`` / ``dist.all_reduce``).
        timeout_s: watchdog timeout for hung peers (0: no watchdog).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = "none"
    all_sum: Callable[[np.ndarray], np.ndarray] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    fault: tuple[int, int, str] | None = None
    watchdog: Watchdog | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.enabled and self.watchdog is None:
            self.watchdog = Watchdog(self.timeout_s, self.rank)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        if not self.enabled:
            return "1 process"
        return f"rank {self.rank} of {self.world_size} ({self.backend})"

    # ----- agreements, all built on one all_sum ------------------------------------
    def sum_floats(self, values) -> np.ndarray:
        """Element-wise sum over ranks of a float vector (the input itself for one process)."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if not self.enabled:
            return v.copy()
        with self.armed():
            return np.asarray(self.all_sum(v), dtype=np.float64).reshape(-1)

    def gather_floats(self, values) -> np.ndarray:
        """Every rank's vector, shape (world_size, n), on every rank."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if not self.enabled:
            return v[None, :].copy()
        table = np.zeros((self.world_size, v.size))
        table[self.rank] = v
        return self.sum_floats(table.reshape(-1)).reshape(self.world_size, v.size)

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (e.g. a validation loss, so early stopping agrees)."""
        if not self.enabled:
            return value
        return float(self.gather_floats([value])[0, 0])

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        if not self.enabled:
            return bool(flag)
        return bool(self.sum_floats([1.0 if flag else 0.0])[0] > 0)

    def should_stop(self, poll, steps: int, last: bool, check_every: int) -> bool:
        """Whether the training loop stops after this step (Ctrl-C), agreed by all ranks.

        One process: ``poll()`` after every step. Distributed: the ranks agree every
        ``check_every`` steps and after the epoch's last step, so they all stop after the
        same step (a rank that stopped alone would leave the others waiting).
        """
        if not self.enabled:
            return bool(poll())
        if steps % check_every and not last:
            return False
        return self.any(poll())

    # ----- per-step hooks ---------------------------------------------------------------
    def armed(self):
        """A context that arms the watchdog around a block (no-op for one process)."""
        return self.watchdog.armed() if self.watchdog is not None else nullcontext()

    def arm(self) -> None:
        """Arm the watchdog around a training loop (see :meth:`disarm`)."""
        if self.watchdog is not None:
            self.watchdog.arm()

    def disarm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.disarm()

    def after_step(self, global_step: int) -> None:
        """Called by the trainers after every step: heartbeat, and the test-only fault injector."""
        if self.watchdog is not None:
            self.watchdog.beat()
        if self.fault is not None and self.fault[0] == self.rank and global_step >= self.fault[1]:
            if self.watchdog is not None:
                self.watchdog.stop()
            inject_fault(self.fault[2], self.rank, global_step)


def parse_fault(text: str | None) -> tuple[int, int, str] | None:
    """Parse ``$MLX_RNN_FAULT`` (``RANK:STEP:MODE``); None when unset or malformed."""
    if not text:
        return None
    try:
        rank, step, mode = text.split(":")
        if mode not in ("exit", "kill", "hang"):
            return None
        return int(rank), int(step), mode
    except ValueError:
        return None


def inject_fault(mode: str, rank: int, step: int) -> None:
    """Test-only: make this rank die (``exit``: exit code 17; ``kill``: SIGKILL) or hang."""
    print(f"[fault injection] rank {rank}: {mode} after step {step}", file=sys.stderr, flush=True)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        while True:
            time.sleep(3600)
    os._exit(17)


# ----- the current run's info ------------------------------------------------------------
_CURRENT = DistInfo()


def current() -> DistInfo:
    """This process's :class:`DistInfo` (world size 1 until a framework's ``init_distributed``)."""
    return _CURRENT


def set_current(info: DistInfo) -> DistInfo:
    global _CURRENT
    _CURRENT = info
    return info


def init(framework: str, enabled: bool, device: str = "auto", timeout: float | None = None) -> DistInfo:
    """With ``enabled`` (``--distributed``), join the launcher's process group (``mlx_rnn.parallel``
    or ``torch_ref.parallel`` ``init_distributed``); otherwise the single-process info.

    Args:
        device: the ``--device`` asked for; timeout: ``--dist-timeout`` in seconds (None: the default,
            0: never).

    Raises:
        ValueError: a negative ``--dist-timeout`` or an unusable device (one line).
    """
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"--dist-timeout must be >= 0 seconds (got {timeout})")
    if not enabled:
        return current()
    from . import backend

    try:
        module = backend.parallel_module(framework)
    except ImportError as e:
        raise ValueError(f"--distributed: {e}") from None
    return module.init_distributed(device, timeout)


def print0(*args, **kwargs) -> None:
    """``print`` on rank 0 only (flushed)."""
    if _CURRENT.is_main:
        kwargs.setdefault("flush", True)
        print(*args, **kwargs)


def rank_seed(seed: int, rank: int) -> int:
    """The dropout seed of ``rank`` in a distributed run (initial weights use ``seed`` on every rank)."""
    return int(np.random.SeedSequence([int(seed), int(rank), 0xD157]).generate_state(1, np.uint32)[0])


# ----- sharding the shared batching plans ---------------------------------------------------
def classify_plan(num_examples: int, batch_size: int, seed: int, epoch: int,
                  rank: int = 0, world: int = 1) -> list[tuple[np.ndarray, float]]:
    """This rank's share of one epoch's classification batches, with gradient weights.

    The global plan is :func:`~mlx_rnn.core.batching.classify_batches` with batch
    ``batch_size * world``; rank ``r`` takes ``[r*B:(r+1)*B]`` of each full global batch
    and ``np.array_split(batch, world)[r]`` of a final partial one (dropped when it has
    fewer than ``world`` examples). The weight ``n_r / n_global`` makes the weighted sum of
    the ranks' mean-loss gradients the global batch's mean-loss gradient.

    Returns:
        list of ``(indices, weight)``; for ``world == 1`` the plain plan with weight 1.0.
    """
    batches = classify_batches(num_examples, batch_size * world, seed, epoch)
    if world == 1:
        return [(b, 1.0) for b in batches]
    out = []
    for b in batches:
        if len(b) == batch_size * world:
            part = b[rank * batch_size:(rank + 1) * batch_size]
        elif len(b) >= world:
            part = np.array_split(b, world)[rank]
        else:
            continue
        out.append((part, len(part) / len(b)))
    return out


def classify_steps(num_examples: int, batch_size: int, world: int = 1) -> int:
    """``len(classify_plan(...))`` without building it."""
    g = batch_size * world
    full, rem = divmod(num_examples, g)
    return full + (1 if rem and (world == 1 or rem >= world) else 0)


def lm_layout(num_chars: int, batch_size: int, seq_len: int, seed: int, epoch: int,
              random_offset: bool = True) -> tuple[int, int]:
    """``(offset, per_stream)`` of :func:`~mlx_rnn.core.batching.lm_streams` for a text of ``num_chars``.

    Raises:
        ValueError: the text is too short for one chunk per stream (as ``lm_streams``).
    """
    offset = int(epoch_rng(seed, epoch).integers(0, seq_len)) if random_offset else 0
    per_stream = ((num_chars - offset) // batch_size - 1) // seq_len * seq_len  # as lm_streams
    if per_stream < seq_len:
        raise ValueError(f"text of {num_chars} characters is too short for batch size "
                         f"{batch_size} x sequence length {seq_len}")
    return offset, per_stream


def lm_steps(num_chars: int, batch_size: int, seq_len: int, world: int = 1) -> int:
    """LM training steps per epoch with global batch ``batch_size * world`` (offsets may cost one chunk)."""
    _, per_stream = lm_layout(num_chars, batch_size * world, seq_len, 0, 0, random_offset=False)
    return per_stream // seq_len - 1


def steps_per_epoch(task: str, train, batch_size: int, seq_len: int, world: int = 1) -> int:
    """Training steps per epoch of either task (``train`` as the Trainer takes it)."""
    if task == "classify":
        return classify_steps(len(train[1]), batch_size, world)
    return lm_steps(len(train), batch_size, seq_len, world)


class LazyStreams:
    """Rows of the LM stream layout read on demand from a text that is not in memory.

    ``source`` has ``len()`` and ``read(start, stop) -> int32 ids`` (e.g. a split of
    :class:`mlx_rnn.core.corpus.Text8Corpus`, a memory map). Indexing as ``lm_chunk`` does,
    ``streams[:, s:e]``, reads ``rows x (e - s)`` ids; ``shape`` is that of the
    in-memory layout. ``np.asarray(streams)`` reads all of it (tests).
    """

    def __init__(self, source, offset: int, per_stream: int, row0: int, rows: int):
        self.source, self.offset, self.per_stream, self.row0, self.rows = source, offset, per_stream, row0, rows

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.per_stream + 1)

    def __getitem__(self, key):
        rows, cols = key
        if rows != slice(None) or not isinstance(cols, slice) or cols.step not in (None, 1):
            raise IndexError("LazyStreams supports streams[:, start:stop] only")
        start, stop, _ = cols.indices(self.per_stream + 1)
        stop = max(stop, start)
        base = self.offset + (self.row0 + np.arange(self.rows)) * (self.per_stream + 1)
        return np.stack([self.source.read(int(b) + start, int(b) + stop) for b in base]).astype(np.int32)

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def lm_shard_streams(ids, batch_size: int, seq_len: int, seed: int, epoch: int,
                     rank: int = 0, world: int = 1, random_offset: bool = True):
    """This rank's rows ``[r*B:(r+1)*B]`` of the epoch's global LM streams (``batch_size * world`` rows).

    ``ids`` is an int array (then the result is :func:`~mlx_rnn.core.batching.lm_streams`'s
    array; for one process exactly its output) or a lazily read text with ``read()``
    (then a :class:`LazyStreams`: nothing is loaded beyond the chunk being trained).
    """
    if not hasattr(ids, "read"):
        if world == 1:
            return lm_streams(ids, batch_size, seq_len, seed, epoch, random_offset=random_offset)
        streams = lm_streams(ids, batch_size * world, seq_len, seed, epoch, random_offset=random_offset)
        return streams[rank * batch_size:(rank + 1) * batch_size]
    offset, per_stream = lm_layout(len(ids), batch_size * world, seq_len, seed, epoch, random_offset)
    return LazyStreams(ids, offset, per_stream, rank * batch_size, batch_size)
