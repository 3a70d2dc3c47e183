"""Exit codes, the errors that carry them, and the one-line error and result output every CLI shares.
"""

from __future__ import annotations

from functools import partial
import json
from pathlib import Path

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.outputs import check_file_output


EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Interrupted(RuntimeError):
    """The user pressed Ctrl-C; resumable state was saved in ``save_dir``."""

    def __init__(self, message: str, task: str = "", save_dir: Path | None = None):
        super().__init__(message)
        self.task, self.save_dir = task, save_dir


class CheckFailed(RuntimeError):
    """A check failed (exit code 1), e.g. a downloaded file's checksum."""


_log = partial(print, flush=True)


def print_result(result: dict, output_json: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if output_json:
        ckpt.atomic_write_bytes(output_json, (text + "\n").encode())


def check_output_json(path, flag: str = "--output-json") -> None:
    """ValueError (one line) unless output file ``path`` (given with ``flag``) can be written
    (:func:`mlx_rnn.core.outputs.check_file_output`: not a directory, parents creatable, writable)."""
    check_file_output(path, flag)


def _one_line(e: BaseException) -> str:
    """An exception as one line (OSError: 'path: reason')."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split("\n")).strip() or type(e).__name__
