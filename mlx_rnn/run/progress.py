"""What a user sees while an epoch trains: a tqdm bar on a terminal, progress lines in a log.

:class:`Progress` is one epoch's progress on stderr. On a terminal it is a tqdm bar over the
batches, as before; when stderr is not a terminal (a log file, a pipe, ``nohup``, a batch
scheduler) or is one of width 0, where a bar shows nothing, it prints a plain line every
``--log-every`` steps or seconds (default 30 s)::

    [lm] epoch 2/20  step 1200/3900 (31 %)  train loss 1.8234  41,200 chars/s  ETA 1m05s

The loss stays on the device between lines: the training loop asks :meth:`Progress.due` after
every step (a clock read, no device read) and reads its loss sum back only when a line is due
(docs/design.md, Performance habits). Framework-neutral; imports neither framework.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, TextIO

from .flags import LOG_EVERY_DEFAULT



def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal a progress bar can be drawn on (a tty of non-zero width)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m`` (``?`` for an unknown duration)."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """One epoch's progress: a tqdm bar on a terminal, else a line every ``every`` (see
    :func:`mlx_rnn.run.flags.log_interval`: ``("steps", N)`` or ``("s", T)``; N = 0: none).

    Args:
        task, epoch, epochs: named in the bar and the lines (``epoch`` counts from 1).
        total: the epoch's steps; ``done``: steps already done before this run (a resumed epoch).
        quiet: neither bar nor lines.
        chars_per_step: characters one step trains on (batch size x sequence length x ranks),
            for the characters per second.
        stream: where it writes (default stderr); ``clock``: seconds (default ``time.perf_counter``).
    """

    def __init__(self, task: str, epoch: int, epochs: int, total: int, done: int = 0, quiet: bool = False,
                 every: tuple = LOG_EVERY_DEFAULT, chars_per_step: int = 0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = f"[{task}] epoch {epoch}/{epochs}"
        self.total, self.done, self.steps = total, done, 0
        self.every, self.chars_per_step, self.clock = every, chars_per_step, clock
        self.bar, self.lines = None, False
        if not quiet and is_terminal(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total - done, desc=f"{task} epoch {epoch}/{epochs}", unit="batch", leave=False,
                            file=self.stream, dynamic_ncols=True)
        elif not quiet:
            self.lines = every[1] > 0
        self.t0 = self.last_t = clock()
        self.last_done = done

    def update(self) -> None:
        """One training step done (no device read)."""
        self.done += 1
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)

    def due(self) -> bool:
        """Whether a progress line is due now (then read the loss and call :meth:`report`)."""
        if not self.lines:
            return False
        kind, n = self.every
        if kind == "steps":
            return self.done - self.last_done >= n
        return self.clock() - self.last_t >= n

    def report(self, loss_sum: float, loss_steps: int) -> str:
        """Print (and return) one progress line: ``loss_sum`` over ``loss_steps`` steps of this
        epoch is its running mean train loss."""
        now = self.clock()
        rate = self.steps / max(now - self.t0, 1e-9)  # steps per second in this run of the epoch
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100 * self.done // max(self.total, 1)
        line = (f"{self.prefix}  step {self.done}/{self.total} ({pct} %)  train loss "
                f"{loss_sum / max(loss_steps, 1):.4f}  {rate * self.chars_per_step:,.0f} chars/s  "
                f"ETA {format_duration(eta)}")
        print(line, file=self.stream, flush=True)
        self.last_t, self.last_done = now, self.done
        return line

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
