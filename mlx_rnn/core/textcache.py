"""A training text encoded once, one id per symbol, kept on disk and read per batch.

Framework-neutral (numpy only). ``--train-text FILE`` is read in one streaming pass
(:func:`mlx_rnn.core.textread.checked_pieces`) that writes the ids of its symbols to
``DIR/text-cache/train-text.ids``: uint8 (one byte per symbol) when the alphabet has at
most 256 symbols, else uint16 or uint32. ``train-text.json`` beside it records the text it
came from (resolved path, size in bytes, modification time in ns), the alphabet, whether it
was normalised, the number of characters and the dtype; it is written last, so a cache
without it is rebuilt. A run that finds a cache matching its text (``--resume``, a second
run into the same directory) maps it instead of reading the text again; a text changed
since (another size or modification time) is read again.

``DIR`` is the run's checkpoint directory (one the run has not made yet gets the cache only
once every input is checked: it is written beside it, hidden, and moved in); a run that saves
nothing uses a temporary directory removed when the process ends. Training reads each batch's rows from the file
(:class:`TextSegments`, through :class:`mlx_rnn.core.batching.LazyStreams`; ``os.pread``,
converting only those rows to int32), so a 1 GB text costs 1 GB of disk, not a 1 GB string
and 4 GB of int32 in the process; the system's page cache keeps the file in memory when there
is room. (A memory map would do the same, but every page read would count in the process's
resident memory until the epoch had touched the whole file.)
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .checkpoint import atomic_write_bytes
from .textread import DataError, SymbolCoder, checked_pieces, id_dtype

CACHE_DIR = "text-cache"
IDS, META = "train-text.ids", "train-text.json"
FORMAT = 1
_PIECE = 8 << 20  # ids per read when scanning the whole file


def source_stat(path) -> dict:
    """What identifies a text file's contents for the cache: resolved path, size, mtime (ns)."""
    p = Path(path).resolve()
    st = p.stat()
    return {"source": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class EncodedText:
    """The ids of a whole text, one per character, in a file read on demand (``os.pread``).

    ``created``: directories and files this process made for it, removed by :meth:`discard`.
    """

    def __init__(self, ids_path: Path, meta: dict, created: list[Path] | None = None):
        self.path, self.meta, self.created = Path(ids_path), meta, created or []
        self.dtype = np.dtype(meta["dtype"])
        self.coder = SymbolCoder(meta["vocab"])
        self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115  (closed with the object)

    def __len__(self) -> int:
        return int(self.meta["chars"])

    def ids(self, start: int, stop: int) -> np.ndarray:
        """The stored ids (uint8/uint16/uint32) of characters ``[start, stop)``.

        Raises:
            DataError: the file is shorter than recorded (changed under the run).
        """
        size = (stop - start) * self.dtype.itemsize
        buf = os.pread(self._file.fileno(), size, start * self.dtype.itemsize) if size > 0 else b""
        if len(buf) != size:
            raise DataError(self.path, "encoded text is shorter than recorded (changed while the run used it?); "
                                       "delete the folder and start again")
        return np.frombuffer(buf, dtype=self.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        """int32 ids of characters ``[start, stop)``."""
        return self.ids(start, stop).astype(np.int32)

    def text(self, start: int, stop: int) -> str:
        """Characters ``[start, stop)`` as a string."""
        return "".join(self.coder.decode(self.ids(s, min(s + _PIECE, stop))) for s in range(start, stop, _PIECE))

    def discard(self) -> None:
        """Remove what this process created for the cache (a run that failed before training)."""
        self._file.close()
        remove(self.created)

    def settle(self, save_dir: Path) -> None:
        """Move a cache written beside a checkpoint directory not made yet into
        ``save_dir/text-cache``, now that the directory exists (see :func:`cache_dir_for`);
        nothing to do for one already in place. Where it cannot be moved, it stays where it is
        for this run (and goes when the process ends)."""
        here, there = self.path.parent, Path(save_dir) / CACHE_DIR
        if here == there or not Path(save_dir).is_dir() or there.exists():
            return
        try:
            os.replace(here, there)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(there, 0o777 & ~umask)  # mkdtemp makes 0700; give the usual permissions
        except OSError:
            return
        self.path, self.created = there / IDS, []

    def remember(self, key: str, value) -> None:
        """Record ``value`` under ``key`` in the cache's metadata (e.g. a fingerprint), if writable."""
        self.meta.setdefault("notes", {})[key] = value
        try:
            _write_meta(self.path.with_name(META), self.meta)
        except OSError:
            pass


def _write_meta(path: Path, meta: dict) -> None:
    atomic_write_bytes(path, (json.dumps(meta, indent=1) + "\n").encode())


def _read_meta(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def remove(paths) -> None:
    """Remove files and directories (with their contents) this process created."""
    for p in paths:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def temp_root() -> Path:
    """Where a run that saves nothing keeps its encoded text (``TMPDIR``, else the system default)."""
    return Path(tempfile.gettempdir())


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest parent that exists."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _temp_dir(parent: Path, prefix: str) -> Path:
    """A new directory in ``parent``, removed when the process ends unless it was moved away."""
    try:
        d = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    except OSError as e:
        raise DataError(parent, f"cannot write the encoded text ({e.strerror or e})") from None
    atexit.register(shutil.rmtree, d, True)
    return d


def cache_dir_for(save_dir: Path | None) -> tuple[Path, list[Path]]:
    """(where the cache is written, what was created for it: removed if the run fails).

    ``save_dir/text-cache`` when the checkpoint directory exists (``--resume``, an existing
    ``--save`` directory); for one not created yet, a hidden directory beside where it will be,
    moved into it by :meth:`EncodedText.settle` once the run has checked everything and made
    the directory (so a run refused before training leaves no directory behind); for a run that
    saves nothing, a temporary directory in ``TMPDIR``. The last two go when the process ends.
    """
    if save_dir is None:
        d = _temp_dir(temp_root(), "mlx-rnn-text-")
        return d, [d]
    if Path(save_dir).is_dir():
        d = Path(save_dir) / CACHE_DIR
        created = [] if d.exists() else [d]
        d.mkdir(exist_ok=True)
        return d, created
    d = _temp_dir(nearest_existing(Path(save_dir).parent), f".{CACHE_DIR}-")
    return d, [d]


def find(cache_dir: Path, path, symbols: str, normalize: bool) -> EncodedText | None:
    """The cache in ``cache_dir`` when it holds ``path`` encoded with ``symbols``, else None."""
    meta = _read_meta(Path(cache_dir) / META)
    want = {"format": FORMAT, **source_stat(path), "vocab": symbols, "normalize": bool(normalize)}
    if meta is None or any(meta.get(k) != v for k, v in want.items()):
        return None
    ids = Path(cache_dir) / IDS
    try:
        if ids.stat().st_size != meta["chars"] * np.dtype(meta["dtype"]).itemsize:
            return None
        return EncodedText(ids, meta)
    except (OSError, KeyError, TypeError, ValueError):
        return None


def encode(path, symbols: str, normalize: bool, cache_dir: Path, created: list[Path],
           progress=None) -> EncodedText:
    """The text of ``path`` encoded into ``cache_dir`` (or the matching cache found there).

    Args:
        created: directories made for the cache (removed by :meth:`EncodedText.discard`).
        progress: ``progress(bytes_read)`` while reading (:class:`mlx_rnn.core.textread.ReadProgress`).

    Raises:
        DataError: a bad text (as :func:`mlx_rnn.core.textread.checked_pieces`) or a cache
            that cannot be written (one line naming it).
    """
    cache_dir = Path(cache_dir)
    found = find(cache_dir, path, symbols, normalize)
    if found is not None:
        found.created = created
        return found
    meta = {"format": FORMAT, **source_stat(path), "vocab": symbols, "normalize": bool(normalize)}
    ids_path, meta_path = cache_dir / IDS, cache_dir / META
    try:
        meta_path.unlink(missing_ok=True)  # the ids below are the old text's until the new metadata is written
        fd, tmp = tempfile.mkstemp(prefix=f".{IDS}.", suffix=".tmp", dir=cache_dir)
    except OSError as e:
        raise DataError(cache_dir, f"cannot write the encoded text ({e.strerror or e})") from None
    n = 0
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            for _, ids in checked_pieces(path, symbols, normalize, progress):
                f.write(ids.tobytes())
                n += len(ids)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, ids_path)
        meta.update(chars=n, dtype=id_dtype(len(symbols)).name)
        _write_meta(meta_path, meta)
    except OSError as e:
        raise DataError(cache_dir, f"cannot write the encoded text ({e.strerror or e})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return EncodedText(ids_path, meta, created if created else [ids_path, meta_path])


def disk_free(path: Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return None


class TextSegments:
    """Ranges of an :class:`EncodedText` joined end to end (the training part: the text without
    its validation blocks and dev tail), read on demand as int32 ids.

    Has ``len()``, ``read(start, stop)`` and ``fingerprint()``, as
    :class:`mlx_rnn.core.corpus.CorpusSplit`, so the trainers batch it through
    :class:`mlx_rnn.core.batching.LazyStreams` without loading it.
    """

    def __init__(self, encoded: EncodedText, ranges: list[tuple[int, int]]):
        self.encoded, self.ranges = encoded, [(int(a), int(b)) for a, b in ranges if b > a]
        self.offsets = np.cumsum([0] + [b - a for a, b in self.ranges])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """int32 ids of characters ``[start, stop)`` of the training part."""
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"training text: range [{start}, {stop}) outside [0, {len(self)})")
        out = []
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        while start < stop:
            a, b = self.ranges[i]
            s = a + start - int(self.offsets[i])
            e = min(b, s + stop - start)
            out.append(self.encoded.ids(s, e))
            start += e - s
            i += 1
        return np.concatenate(out).astype(np.int32) if len(out) != 1 else out[0].astype(np.int32)

    def fingerprint(self) -> str:
        """sha256 of the training ids as int32, as :func:`mlx_rnn.core.taskdata.data_fingerprint`
        hashes an in-memory array (so resumable state written before the cache still matches);
        remembered in the cache's metadata."""
        key = "sha256:" + ",".join(f"{a}-{b}" for a, b in self.ranges)
        known = self.encoded.meta.get("notes", {}).get(key)
        if known:
            return known
        h = hashlib.sha256()
        for a, b in self.ranges:
            for s in range(a, b, _PIECE):
                h.update(self.encoded.ids(s, min(s + _PIECE, b)).astype("<i4").tobytes())
        self.encoded.remember(key, h.hexdigest())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"TextSegments({len(self)} characters of {self.encoded.meta['source']})"
