"""Data-parallel training, the framework-neutral half (numpy only).

Both trainers run data-parallel the same way (``--distributed``; started by
``mlx.launch`` for MLX, by ``torchrun`` for PyTorch):

- every rank builds the *same* shared batching plan of :mod:`mlx_rnn.core.batching`
  with the global batch ``batch_size * world_size`` and takes its own slice of
  it (:func:`mlx_rnn.core.batching.classify_plan`, :func:`~mlx_rnn.core.batching.lm_shard_streams`): rank ``r`` takes
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
from which every small agreement is built), joining the ranks (:func:`init`),
rank-0 printing, a watchdog for hung peers and a test-only fault injector. Each
rank's share of the batching plans is in :mod:`mlx_rnn.core.batching`; the
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
