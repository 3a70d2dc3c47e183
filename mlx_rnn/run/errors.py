"""Exit codes, the errors that carry them, and the one-line error and result output every CLI shares.
"""

from __future__ import annotations

from functools import partial
import json
import os
from pathlib import Path
import sys

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import distributed
from mlx_rnn.core.memory import allocation_message
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


def temp_dir_message(e: BaseException) -> str | None:
    """One line for MLX failing to use ``$TMPDIR``, where its CPU compiler keeps the kernels it
    builds (``$TMPDIR/mlx/<version>/cpu``; C++ ``std::filesystem`` errors such as "filesystem
    error: cannot create directories" or "temp_directory_path: Not a directory"); None for any
    other error. (The default CPU paths build no kernel; the Python-level op does.)"""
    text = " ".join(str(e).split())
    if "temp_directory_path" not in text and not ("filesystem error" in text and "/mlx/" in text):
        return None
    where = os.environ.get("TMPDIR") or "unset, so /tmp"
    return f"MLX cannot keep its compiled kernels under $TMPDIR (TMPDIR={where}): {text}; set TMPDIR to a writable directory"


def _outcome(e: BaseException) -> tuple[int | None, list[str]]:
    """``e``'s exit code (None: not one a script handles) and the lines that say so on stderr."""
    own = getattr(e, "exit_code", None)
    if isinstance(own, int) and not isinstance(own, bool):
        return own, [f"error: {one_line(e)}"]
    if isinstance(e, CheckFailed):
        return EXIT_CHECK_FAILED, [f"error: {one_line(e)}"]
    if isinstance(e, BrokenPipeError):  # `... | head`: the reader of the output is gone
        return EXIT_BAD_INPUT, ["error: standard output was closed before the output was written (broken pipe)"]
    if isinstance(e, (ValueError, OSError)):  # DataError and CheckpointError are ValueErrors
        return EXIT_BAD_INPUT, [f"error: {one_line(e)}"] + [f"  {line}" for line in getattr(e, "details", ())]
    if isinstance(e, Diverged):
        return EXIT_DIVERGED, [f"error: {one_line(e)}"]
    if isinstance(e, Interrupted):  # (distributed: rank 0 saved the state; the others wrote nothing)
        return EXIT_INTERRUPTED, [f"{e}"] if distributed.current().is_main else []
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, [f"interrupted{f' by {e}' if str(e) else ''}"]
    if isinstance(e, (MemoryError, RuntimeError)):
        if allocation_message(e):  # an allocation that failed despite the estimate
            return EXIT_BAD_INPUT, [f"error: {allocation_message(e)}"]
        if temp_dir_message(e):
            return EXIT_BAD_INPUT, [f"error: {temp_dir_message(e)}"]
        if distributed.current().enabled:  # a peer died ("connection to a peer was lost")
            return EXIT_CHECK_FAILED, [f"error: rank {distributed.current().rank}: {one_line(e)}"]
    return None, []


def exit_code(e: BaseException) -> int | None:
    """The exit code every script returns for ``e`` (docs/design.md, Exit codes); None for an
    exception no script turns into a code (a bug: the script lets it propagate, a traceback).

    In order: an ``exit_code`` attribute the exception carries (an int, e.g. the benchmark's
    worker errors); :class:`CheckFailed` 1; bad input (ValueError, including ``DataError`` and
    ``CheckpointError``, and OSError) 2; :class:`Diverged` 3; :class:`Interrupted` and
    KeyboardInterrupt 130; a failed allocation (MemoryError, or a RuntimeError saying so) 2;
    another RuntimeError in a distributed run (a peer died) 1.
    """
    return _outcome(e)[0]


def report_exit(e: BaseException) -> int:
    """Print ``e`` to stderr as one line ("error: ...", "interrupted", a run's resume hint; a
    missing data directory adds the indented lines of ``e.details``) and return its
    :func:`exit_code`; every script's ``main`` ends with ``except (Exception, KeyboardInterrupt)
    as e: return report_exit(e)``.

    Raises:
        e itself, unchanged, where :func:`exit_code` is None (a bug keeps its traceback).
    """
    code, lines = _outcome(e)
    if code is None:
        raise e
    if isinstance(e, BrokenPipeError):  # no "Exception ignored" traceback when Python flushes stdout at exit
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # (stdout without a file descriptor: nothing to flush there)
            pass
    for line in lines:
        print(line, file=sys.stderr)
    return code


log = partial(print, flush=True)


def print_result(result: dict, output_json: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if output_json:
        ckpt.atomic_write_bytes(output_json, (text + "\n").encode(), follow_links=True)


def check_output_json(path, flag: str = "--output-json") -> None:
    """ValueError (one line) unless output file ``path`` (given with ``flag``) can be written
    (:func:`mlx_rnn.core.outputs.check_file_output`: not a directory, parents creatable, writable)."""
    check_file_output(path, flag)


def one_line(e: BaseException) -> str:
    """An exception as one line (OSError: 'path: reason')."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split("\n")).strip() or type(e).__name__
