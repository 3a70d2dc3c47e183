"""Run a trainer and SIGKILL it at its N-th file event (``python tests/kill_at_save.py N WHEN FW ARGS...``).

Events are every ``os.replace`` (the commit of an atomic write, and the moves of a staged
resumable state) and every ``metrics.jsonl`` append; WHEN is ``before`` (the temporary file
is written, not yet renamed) or ``after`` (the event is done). Without an N-th event the run
ends normally. Used by tests/core/test_savedir.py.
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N, WHEN, FW = int(sys.argv[1]), sys.argv[2], sys.argv[3]
_count = [0]


def _event(when: str) -> None:
    if when == WHEN:
        _count[0] += 1
        if _count[0] == N:
            os.kill(os.getpid(), signal.SIGKILL)


def _wrap(fn):
    def wrapped(*a, **k):
        _event("before")
        out = fn(*a, **k)
        _event("after")
        return out
    return wrapped


os.replace = _wrap(os.replace)
from mlx_rnn.core import checkpoint  # noqa: E402

checkpoint.append_jsonl = _wrap(checkpoint.append_jsonl)
from mlx_rnn.run.cli import main  # noqa: E402

sys.exit(main(FW, sys.argv[4:]))
