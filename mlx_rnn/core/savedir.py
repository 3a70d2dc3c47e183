"""The checkpoint directory of a run: its lock and what a crash left there (framework-neutral).

- :func:`lock_dir`: an OS file lock (``fcntl.flock``, exclusive, non-blocking) on the
  directory itself, held for the whole run. The kernel drops it when the process ends, however
  it ends, so a crashed run leaves no stale lock; a second run into the same directory gets
  :class:`DirLocked` (one line, exit 2).
- :func:`held_elsewhere`: whether another run holds a directory now (for messages).
- :func:`claim_run_dir`: the fresh directory of a run without ``--save``
  (``runs/NAME-DATE-TIME``, :func:`run_dir_name`); :func:`remove_if_empty` drops it again
  when the run saved nothing.
- :func:`recover`: run under the lock before the directory is read. It finishes or drops a
  half-written resumable state (``resume/.staged``, see :func:`mlx_rnn.core.checkpoint.save_resume`),
  removes every temporary file (``.NAME.*.tmp``) a killed run left, and, in a directory
  without a committed checkpoint (no ``config.json``: the first save never finished), removes
  the partial weights, metrics and resume state so the directory can be used again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from pathlib import Path

from .textcache import CACHE_DIR as _CACHE_DIR

#: the files a trainer writes into a checkpoint directory (removed when no checkpoint was committed)
PARTIAL = ("model.safetensors", "metrics.jsonl")
#: the configuration of a task an interrupted two-task run has not started (DIR/TASK/resume/PENDING)
PENDING = "pending_config.json"

_held: dict[str, int] = {}  # resolved path -> open fd holding the lock (for the life of the process)


class DirLocked(ValueError):
    """Another running process holds the directory's lock. ``str()`` is one line."""


def lock_dir(path, flag: str = "--save") -> None:
    """Create ``path`` if needed and hold an exclusive lock on it until the process exits.

    Raises:
        DirLocked: another process holds it.
        OSError: the directory cannot be created or opened.
    """
    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        return
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DirLocked(f"{flag}: {path} is in use by another run (it holds the directory's lock); "
                        "wait for it to finish or save somewhere else") from None
    _held[key] = fd


def held_elsewhere(path) -> bool:
    """Whether another process holds the lock of directory ``path`` now (never this process's own
    locks; False when ``path`` cannot be opened). Takes no lock."""
    path = Path(path)
    if str(path.resolve()) in _held:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (drops the lock it may have taken)
    return False


def run_dir_name(tasks: list[str], train_text=None) -> str:
    """The name of a run's default checkpoint directory, before its date: the stem of
    ``train_text`` (letters, digits, ``.``, ``_`` and ``-`` kept, at most 40 characters), else the
    task, or ``both`` for two."""
    if train_text:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(train_text).stem).strip(".-")[:40]
        if stem:
            return stem
    return tasks[0] if len(tasks) == 1 else "both"


def claim_run_dir(path) -> Path:
    """Create the new directory ``path``, or ``path-2``, ``path-3`` ... when it exists (two runs
    started in the same second); its parents are created. Returns the directory created.

    Raises:
        OSError: it cannot be created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        d = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "a thousand runs of this name exist", str(path))


def remove_if_empty(path, parent: bool = True) -> bool:
    """Remove directory ``path`` when no file is in it outside ``text-cache/`` (a default
    checkpoint directory of a run that saved nothing: the encoded own text alone is no use
    without a checkpoint), and (``parent``) its parent (``runs/``) when that is left empty;
    True when ``path`` was removed."""
    path = Path(path)
    if not path.is_dir() or any((p.is_file() or p.is_symlink()) and _CACHE_DIR not in p.relative_to(path).parts
                                for p in path.rglob("*")):
        return False
    shutil.rmtree(path)
    if not parent:
        return True
    try:
        path.parent.rmdir()  # only succeeds when empty: the first run's runs/ folder
    except OSError:
        pass
    return True


def unlock_all() -> None:
    """Release every lock this process holds (tests; the end of the process does the same)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()


def _finish_staged(rdir: Path) -> list[str]:
    staged = rdir / ".staged"
    if not staged.is_dir():
        return []
    if (staged / "trainer_state.json").is_file():  # committed: move the rest into place (roll forward)
        for name in ("model.safetensors", "optimizer.safetensors", "trainer_state.json"):
            if (staged / name).is_file():
                os.replace(staged / name, rdir / name)
        shutil.rmtree(staged, ignore_errors=True)
        return ["finished the resumable state a killed run had written"]
    shutil.rmtree(staged, ignore_errors=True)  # not committed: the previous state stands
    return ["removed a half-written resumable state"]


def _remove_tmp(d: Path) -> int:
    n = 0
    for sub in (d, d / "resume"):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
                    p.unlink(missing_ok=True)
                    n += 1
    return n


def recover(path) -> list[str]:
    """Clean up what a crashed run left in checkpoint directory ``path`` (call under the lock).

    Returns:
        One short phrase per thing done (empty when there was nothing to do).
    """
    d = Path(path)
    if not d.is_dir():
        return []
    done = _finish_staged(d / "resume")
    n = _remove_tmp(d)
    if n:
        done.append(f"removed {n} temporary file{'s' if n != 1 else ''}")
    rdir = d / "resume"
    if not (d / "config.json").exists() and not (rdir / PENDING).exists():
        partial = [d / name for name in PARTIAL if (d / name).exists()]
        if rdir.is_dir():
            partial.append(rdir)
        for p in partial:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if partial:
            done.append("removed the files of a checkpoint whose first save never finished ("
                        + ", ".join(p.name for p in partial) + ")")
    return done


def prepare_save_dir(path, flag: str = "--save", log=None) -> list[str]:
    """Lock checkpoint directory ``path`` for this run and :func:`recover` it; says what was cleaned."""
    lock_dir(path, flag)
    done = recover(path)
    if done:
        import sys

        (log or (lambda m: print(m, file=sys.stderr, flush=True)))(f"note: {path}: {'; '.join(done)}")
    return done


def check_save_dirs(plans, save: str | None, resume: str | None, multi: bool, is_main: bool) -> None:
    """The trainers' checks of every task's checkpoint directory, before any data is read: not a
    file, not a two-task root for one task, no checkpoint there unless it is being resumed, and
    (on the rank that writes) not locked by a run using it now. ``save``, ``resume``: the
    ``--save`` and ``--resume`` directories given (None: not given), for the messages.

    Raises:
        ValueError: one line naming the directory.
    """
    for plan in plans:
        d = plan.save_dir
        if d is None:
            continue
        for p in (d.parent, d) if multi else (d,):
            if p.exists() and not p.is_dir():
                raise ValueError(f"--save {save}: {p} exists and is not a directory")
        if d.is_dir() and is_main:  # a run using it now: say so first
            lock_dir(d, f"--save {save}" if save else f"--resume {resume}")
        resuming_here = plan.resume_dir is not None and d.resolve() == plan.resume_dir.resolve()
        if not multi and not resuming_here and any((d / t / "config.json").exists() for t in ("classify", "lm")):
            raise ValueError(f"--save {save}: {d} holds the checkpoints of a two-task run; "
                             "save somewhere else (or --resume one of its task directories)")
        if not resuming_here and (d / "config.json").exists():
            raise ValueError(f"--save {save}: {d} already holds a checkpoint; continue it with --resume {d}, "
                             "or save somewhere else")
