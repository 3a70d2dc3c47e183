"""Output paths checked before any work (``--save``, ``--plot``, ``--output-json``); numpy-free.

One rule for all three, checked by every script before it reads data or trains:

- a file output (``--plot``, ``--output-json``) must not be an existing directory, nor a FIFO,
  device or socket (outputs are written atomically: a new file renamed over the path, which
  would replace such a file instead of writing to it); a symbolic link is written through
  (its target is the output); a directory output (``--save``) must not be an existing file;
- the missing parent directories are created when the output is written, so every existing
  ancestor must be a directory (not a file) and the nearest one must be writable: a probe file
  is created and removed there, which also catches read-only file systems and ``/proc``;
- ``--plot`` must name an image format matplotlib writes (``.png``, ``.pdf``, ``.svg``, ...);
  the file is written in the format its suffix names.

Every failure is a ``ValueError`` with one line: ``FLAG PATH: cause``.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _nearest_existing(p: Path) -> Path:
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_writable_under(flag: str, path, target: Path) -> None:
    """The nearest existing ancestor of ``target`` is a writable directory."""
    anc = _nearest_existing(target)
    if not anc.is_dir():
        raise ValueError(f"{flag} {path}: {anc} exists and is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write in {anc} ({e.strerror or e})") from None


def check_file_output(path, flag: str = "--output-json") -> None:
    """ValueError (one line) unless the file ``path`` can be written (see the module doc)."""
    if not path:
        return
    p = Path(os.path.realpath(path))  # a symbolic link: its target is the file written
    if p.is_symlink():  # (realpath stops at a link that loops)
        raise ValueError(f"{flag} {path}: a symbolic link that loops")
    if p.is_dir():
        raise ValueError(f"{flag} {path}: is a directory")
    if p.exists() and not p.is_file():
        mode = p.stat().st_mode
        kind = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
        raise ValueError(f"{flag} {path}: is {kind}; outputs are written as a new file renamed over the path, "
                         "name a regular file")
    if p.exists() and not os.access(p, os.W_OK):
        raise ValueError(f"{flag} {path}: file is not writable")
    _check_writable_under(flag, path, p.parent)


def check_dir_output(path, flag: str = "--save") -> None:
    """ValueError (one line) unless the directory ``path`` can be created or written in."""
    if not path:
        return
    p = Path(path).absolute()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path}: {path} exists and is not a directory")
    _check_writable_under(flag, path, p)


def plot_formats() -> dict:
    """``{suffix: description}`` of the image formats matplotlib can write."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ValueError("--plot needs matplotlib (install the 'plot' extra)") from None
    return FigureCanvasBase.get_supported_filetypes()


def check_plot_output(path, flag: str = "--plot") -> None:
    """:func:`check_file_output` plus a suffix naming a format matplotlib writes."""
    if not path:
        return
    check_file_output(path, flag)
    suffix = Path(path).suffix.lower().lstrip(".")
    formats = plot_formats()
    if suffix not in formats:
        known = ", ".join(f".{k}" for k in sorted(formats))
        what = f"unknown image format '.{suffix}'" if suffix else "no file suffix to name the image format"
        raise ValueError(f"{flag} {path}: {what} (matplotlib writes {known})")


def image_metadata(fmt: str, what: str) -> dict | None:
    """Metadata naming the project's command that drew an image (``Software`` in a PNG's text
    chunks, ``Creator`` in PDF and SVG), so a committed picture can be traced to its code."""
    tag = f"mlx-rnn {what}"
    if fmt == "png":
        return {"Software": tag}
    if fmt in ("pdf", "svg"):
        return {"Creator": tag}
    return None


def save_figure(fig, path, what: str = "figure") -> Path:
    """Write a matplotlib figure to ``path`` atomically, in the format its suffix names
    (temporary file beside it, renamed; no temporary is left behind on failure); ``what``
    names the drawing command in the image's metadata (:func:`image_metadata`). A symbolic link
    is written through: its target is replaced."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lower().lstrip(".") or "png"
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format=fmt, metadata=image_metadata(fmt, what))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
