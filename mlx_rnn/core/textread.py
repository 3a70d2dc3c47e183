"""Reading UTF-8 text files piece by piece, in memory that does not grow with the file.

Framework-neutral (numpy only). Every text reader of the project goes through here, so the
rules live in one place:

- only a regular file is read: a directory, a device (``/dev/zero``), a named pipe (FIFO) or a
  socket is refused before a byte is read (:func:`open_regular`; a FIFO would block, a device
  never end);
- a UTF-8 byte-order mark is dropped, CRLF becomes LF, invalid UTF-8 is an error naming the
  line, the column (in characters) and the byte;
- a language-modelling text drops one final newline (:func:`text_pieces`);
- symbols outside an alphabet are errors naming line and column (:class:`SymbolCoder`).

The file is read :data:`PIECE_BYTES` at a time; each piece is decoded, checked and encoded
(one small integer per symbol) before the next is read, so a 1 GB text costs a few pieces of
memory, not a 1 GB string and a 4 GB int32 array. ASCII and Latin-1 pieces take a fast path
(``bytes.translate``); other scripts go through a numpy lookup over code points.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import numpy as np

#: bytes read per piece
PIECE_BYTES = 4 << 20
_BOM = b"\xef\xbb\xbf"


class DataError(ValueError):
    """Bad input data. ``str(err)`` is a one-line message: ``file:line:col: cause``."""

    def __init__(self, path, cause: str, line: int | None = None, col: int | None = None):
        self.path, self.cause, self.line, self.col = str(path), cause, line, col
        where = self.path
        if line is not None:
            where += f":{line}"
            if col is not None:
                where += f":{col}"
        super().__init__(f"{where}: {cause}")


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _not_regular(p: Path, mode: int) -> DataError:
    if stat.S_ISDIR(mode):
        return DataError(p, "is a directory, expected a text file")
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return DataError(p, f"is {kind}, not a regular file: save the text to a file and give that")


def file_size(path) -> int:
    """The size in bytes of regular file ``path``, checked without opening it.

    Raises:
        DataError: missing, unreadable, a directory, a device, a FIFO or a socket (one line).
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DataError(p, "file not found") from None
    except OSError as e:
        raise DataError(p, f"cannot read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(p, st.st_mode)
    return st.st_size


def open_regular(path):
    """Open ``path`` for reading in binary mode, refusing anything but a regular file.

    The file is opened without blocking and checked on the open descriptor, so a FIFO (which
    would wait for a writer) or a device swapped in after a check is still refused.

    Raises:
        DataError: as :func:`file_size`.
    """
    p = Path(path)
    file_size(p)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DataError(p, "file not found" if isinstance(e, FileNotFoundError)
                        else f"cannot read ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(p, mode)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class Where:
    """Line and column (1-based, in characters) of the next character of a text read in pieces."""

    def __init__(self):
        self.line, self.col = 1, 1

    def at(self, piece: str, pos: int) -> tuple[int, int]:
        """(line, column) of ``piece[pos]``, ``piece`` being the next piece of the text."""
        nl = piece.rfind("\n", 0, pos)
        if nl < 0:
            return self.line, self.col + pos
        return self.line + piece.count("\n", 0, pos), pos - nl

    def advance(self, piece: str) -> None:
        nl = piece.rfind("\n")
        if nl < 0:
            self.col += len(piece)
        else:
            self.line += piece.count("\n")
            self.col = len(piece) - nl


def _complete(data: bytes) -> int:
    """Length of the longest prefix of ``data`` that does not end inside a UTF-8 sequence."""
    n = len(data)
    for i in range(n - 1, max(n - 4, 0) - 1, -1):
        b = data[i]
        if b < 0x80:
            return n
        if b >= 0xC0:  # a lead byte: complete when all its continuation bytes are here
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return i if n - i < need else n
    return n


def decoded_pieces(path, progress=None):
    """The text of ``path`` in pieces (str), in order: byte-order mark dropped, CRLF as LF.

    ``progress(bytes_read)``, when given, is called after every piece.

    Raises:
        DataError: a file :func:`open_regular` refuses, a read error, invalid UTF-8 (line,
            column, byte), a NUL character (a binary file) or a file with no text at all
            ("file is empty").
    """
    p = Path(path)
    where, carry, cr, done, total = Where(), b"", "", 0, 0
    with open_regular(p) as f:
        while True:
            try:
                chunk = f.read(PIECE_BYTES if done else max(PIECE_BYTES, len(_BOM)))
            except OSError as e:
                raise DataError(p, f"cannot read ({e.strerror or e})") from None
            done += len(chunk)
            eof = not chunk
            if done == len(chunk) and chunk.startswith(_BOM):  # (some Windows editors write one)
                chunk = chunk[len(_BOM):]
            data = carry + chunk
            end = len(data) if eof else _complete(data)
            try:
                text = data[:end].decode("utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_error(p, data, e, where) from None
            carry = data[end:]
            nul = text.find("\x00")  # valid UTF-8, but no text: a binary file (zeros, an image, a database)
            if nul >= 0:
                line, col = where.at(text, nul)
                raise DataError(p, "NUL character: this is a binary file, not text", line, col)
            where.advance(text)
            text = cr + text
            cr = "\r" if not eof and text.endswith("\r") else ""  # a CRLF may span two pieces
            text = text.replace("\r\n", "\n") if not cr else text[:-1].replace("\r\n", "\n")
            total += len(text)
            if text:
                yield text
            if progress is not None:
                progress(done)
            if eof:
                break
    if total == 0:
        raise DataError(p, "file is empty")


def _utf8_error(p: Path, data: bytes, e: UnicodeDecodeError, where: Where) -> DataError:
    before = data[:e.start].decode("utf-8")
    line, col = where.at(before, len(before))
    return DataError(p, f"not valid UTF-8 (byte 0x{data[e.start]:02x})", line, col)


def read_utf8(path) -> str:
    """A whole (small) file as text, read as :func:`decoded_pieces` reads it."""
    return "".join(decoded_pieces(path))


def text_pieces(path, progress=None, final_crlf: bool = False):
    """:func:`decoded_pieces` without the text's one final newline (as editors save files):
    the pieces of a language-modelling text. ``final_crlf``: a carriage return left before that
    newline goes too (the ``--normalize`` reading, where a final CR CR LF ends in CR LF)."""
    held = ""
    for piece in decoded_pieces(path, progress):
        piece = held + piece if held else piece
        piece, held = piece[:-2], piece[-2:]  # the last two characters wait for the end of the text
        if piece:
            yield piece
    if held.endswith("\n"):
        held = held[:-1]
        if final_crlf and held.endswith("\r"):
            held = held[:-1]
    if held:
        yield held


def text_symbols(path, progress=None) -> tuple[str, int]:
    """(sorted symbols, number of characters) of a language-modelling text (``--vocab corpus``).

    Raises:
        DataError: as :func:`decoded_pieces`; "file is empty" for a text of nothing but a newline.
    """
    seen: set = set()
    n = 0
    for piece in text_pieces(path, progress):
        add_symbols(seen, piece)
        n += len(piece)
    if n == 0:
        raise DataError(path, "file is empty")
    return "".join(sorted(seen)), n


def checked_pieces(path, symbols: str, normalize: bool = False, progress=None):
    """The pieces of a language-modelling text with their ids: ``(str, ids)``, in order.

    With ``normalize`` each piece is mapped onto a-z and space first
    (:func:`mlx_rnn.core.normalize.normalize_text`; a run of spaces across two pieces is
    squeezed as in one pass over the whole text).

    Raises:
        DataError: as :func:`decoded_pieces`; an empty text; a newline or a character outside
            ``symbols`` (line and column); with ``normalize``, no letter or digit at all.
    """
    from .normalize import normalize_text

    p = Path(path)
    coder, where, n, space, letters = SymbolCoder(symbols), Where(), 0, False, False
    for piece in text_pieces(p, progress, final_crlf=normalize):
        if normalize:
            piece = normalize_text(piece)
            piece = piece[1:] if space and piece.startswith(" ") else piece
            if not piece:
                continue
            space, letters = piece.endswith(" "), letters or bool(piece.strip(" "))
        ids = coder.encode(piece)
        if ids is None:
            raise _symbol_error(p, piece, coder, where)
        where.advance(piece)
        n += len(piece)
        yield piece, ids
    if normalize and not letters:
        raise DataError(p, "no letters or digits left after normalisation (nothing to score)")
    if n == 0:
        raise DataError(p, "file is empty")


def _symbol_error(p: Path, piece: str, coder: "SymbolCoder", where: Where) -> DataError:
    from .vocab import TEXT8_SYMBOLS

    pos = coder.first_unknown(piece)
    line, col = where.at(piece, pos)
    ch = piece[pos]
    if ch == "\n":
        return DataError(p, "newline inside the text (use --normalize to turn it into a space)", line, col)
    hint = " (use --normalize to map text onto a-z and space)" if coder.symbols == TEXT8_SYMBOLS else ""
    return DataError(p, f"character {ch!r} (U+{ord(ch):04X}) is not in the vocabulary{hint}", line, col)


def id_dtype(num_symbols: int) -> np.dtype:
    """The smallest unsigned dtype that holds ``num_symbols`` ids: uint8 up to 256 symbols."""
    return np.dtype(np.uint8 if num_symbols <= 1 << 8 else np.uint16 if num_symbols <= 1 << 16 else np.uint32)


def _latin1(piece: str) -> bytes | None:
    """``piece`` as one byte per character when every code point is below 256, else None."""
    try:
        return piece.encode("latin-1")
    except UnicodeEncodeError:
        return None


def _code_points(piece: str) -> np.ndarray:
    return np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)


class SymbolCoder:
    """Checks pieces of text against an alphabet and encodes them as ids of :func:`id_dtype`.

    Args:
        symbols: the alphabet in id order (unique characters).
    """

    def __init__(self, symbols: str):
        self.symbols = symbols
        self.dtype = id_dtype(len(symbols))
        top = max(map(ord, symbols))
        self.table = np.full(top + 1, -1, dtype=np.int64)
        for i, ch in enumerate(symbols):
            self.table[ord(ch)] = i
        small = [ch for ch in symbols if ord(ch) < 256]
        self.allowed = bytes(ord(ch) for ch in small)  # deleted by translate: what is left is unknown
        self.byte_ids = bytes(self.table[c] if c <= top and 0 <= self.table[c] < 256 else 0 for c in range(256))
        self.points = np.array([ord(ch) for ch in symbols], dtype=np.uint32)

    def first_unknown(self, piece: str) -> int:
        """Position of the first character of ``piece`` outside the alphabet, or -1."""
        b = _latin1(piece)
        if b is not None and not b.translate(None, self.allowed):
            return -1
        codes = _code_points(piece)
        ok = codes < self.table.size
        ok[ok] = self.table[codes[ok]] >= 0
        bad = np.flatnonzero(~ok)
        return int(bad[0]) if bad.size else -1

    def encode(self, piece: str) -> np.ndarray | None:
        """The ids of ``piece`` (array of :attr:`dtype`), or None when a character is outside the alphabet."""
        b = _latin1(piece)
        if b is not None:
            if b.translate(None, self.allowed):
                return None
            if self.dtype == np.uint8:
                return np.frombuffer(b.translate(self.byte_ids), dtype=np.uint8)
            return self.table[np.frombuffer(b, dtype=np.uint8)].astype(self.dtype)
        codes = _code_points(piece)
        if int(codes.max()) >= self.table.size:
            return None
        ids = self.table[codes]
        return None if ids.min() < 0 else ids.astype(self.dtype)

    def decode(self, ids) -> str:
        """The text of ``ids`` (any integer array)."""
        return self.points[np.asarray(ids)].tobytes().decode("utf-32-le")


def add_symbols(seen: set, piece: str) -> None:
    """Add the characters of ``piece`` to ``seen`` (the ``--vocab corpus`` alphabet pass)."""
    b = _latin1(piece)
    if b is not None:
        rest = b.translate(None, bytes(ord(ch) for ch in seen if ord(ch) < 256))
        while rest:  # one pass per new symbol, over what is left
            seen.add(chr(rest[0]))
            rest = rest.translate(None, rest[:1])
        return
    codes = _code_points(piece)
    known = np.array(sorted(ord(ch) for ch in seen), dtype=np.uint32)
    fresh = codes[~np.isin(codes, known)] if known.size else codes
    seen.update(chr(c) for c in np.unique(fresh).tolist())


class ReadProgress:
    """``progress(bytes_done)`` for the readers: every ``every_s`` seconds one line to stderr,
    ``LABEL: 312 of 1,074 MB, 104 MB/s``. Silent for a read shorter than ``every_s``
    (small texts print nothing) or when ``enabled`` is false (``--quiet``, ranks other than 0)."""

    def __init__(self, label: str, total_bytes: int, enabled: bool = True, every_s: float = 5.0):
        self.label, self.total, self.enabled, self.every_s = label, total_bytes, enabled, every_s
        self.t0 = self.last = time.perf_counter()
        self.printed = False

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.every_s:
            return
        self.last, self.printed = now, True
        rate = done / 1e6 / max(now - self.t0, 1e-9)
        print(f"{self.label}: {done / 1e6:,.0f} of {self.total / 1e6:,.0f} MB, {rate:,.0f} MB/s",
              file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
