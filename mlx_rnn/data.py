"""Readers for the exercise's files and the data-directory lookup.

Framework-neutral: imports neither mlx nor torch. Every reader either returns
clean data or raises :class:`DataError` whose message is one line naming the
file, line, column and cause.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vocab import TEXT8, Indexer

EXAMPLE_LENGTH = 20
CLASSIFY_FILES = {
    "train_consonant": "train-consonant-examples.txt",
    "train_vowel": "train-vowel-examples.txt",
    "dev_consonant": "dev-consonant-examples.txt",
    "dev_vowel": "dev-vowel-examples.txt",
}
LM_FILES = {"train": "text8-100k.txt", "dev": "text8-dev.txt"}


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


def _read_utf8(path) -> str:
    """Read a whole file as UTF-8 text, dropping a byte-order mark and turning CRLF into LF."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, "file not found")
    if p.is_dir():
        raise DataError(p, "is a directory, expected a text file")
    raw = p.read_bytes()
    if not raw:
        raise DataError(p, "file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(p, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})", line, col) from None
    text = text.replace("\r\n", "\n")
    if not text:
        raise DataError(p, "file is empty")
    return text


def _check_symbols(path, text: str, vocab: Indexer, line: int = 1, col0: int = 1) -> None:
    pos = vocab.first_unknown(text)
    if pos >= 0:
        ch = text[pos]
        hint = " (use --normalize to map text onto a-z and space)" if vocab is TEXT8 else ""
        raise DataError(path, f"character {ch!r} (U+{ord(ch):04X}) is not in the vocabulary{hint}",
                        line, col0 + pos)


def read_examples(path, vocab: Indexer = TEXT8, length: int = EXAMPLE_LENGTH) -> list[str]:
    """Read a classification example file: one window of exactly ``length`` characters per line.

    Lines are never stripped (a window may begin or end with a space). CRLF endings,
    a UTF-8 byte-order mark and a missing final newline are accepted.

    Returns:
        list of str, each of ``length`` characters.

    Raises:
        DataError: missing/empty file, a directory, non-UTF-8 bytes, a line of the
            wrong length, or a character outside ``vocab``.
    """
    text = _read_utf8(path)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line
    if not lines:
        raise DataError(path, "file has no example lines")
    for n, line in enumerate(lines, start=1):
        if "\r" in line:
            raise DataError(path, "stray carriage return", n, line.index("\r") + 1)
        if len(line) != length:
            raise DataError(path, f"line has {len(line)} characters, expected exactly {length}", n)
        _check_symbols(path, line, vocab, n)
    return lines


def read_text(path, vocab: Indexer = TEXT8, normalize: bool = False) -> str:
    """Read a language-modelling text file.

    One trailing newline (as editors save files) is ignored. With ``normalize`` the text
    is mapped onto the text8 alphabet first (see :mod:`mlx_rnn.normalize`); otherwise any
    other newline or a character outside ``vocab`` is an error.

    Raises:
        DataError: missing/empty file, a directory, non-UTF-8 bytes, a stray newline,
            or a character outside ``vocab``.
    """
    text = _read_utf8(path)
    if normalize:
        from .normalize import normalize_text

        text = normalize_text(text)
        if not text:
            raise DataError(path, "no text left after normalisation")
        return text
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise DataError(path, "file is empty")
    if "\n" not in vocab and "\n" in text:
        pos = text.index("\n")
        line = text.count("\n", 0, pos) + 1
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise DataError(path, "newline inside the text (use --normalize to turn it into a space)",
                        line, col)
    # locate the offending character by line for a useful message
    pos = vocab.first_unknown(text)
    if pos >= 0:
        line = text.count("\n", 0, pos) + 1
        col0 = pos - (text.rfind("\n", 0, pos) + 1)
        _check_symbols(path, text[pos], vocab, line, col0 + 1)
    return text


def resolve_data_dir(data_dir=None) -> Path:
    """The data directory: ``data_dir``, else ``$MLX_RNN_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir)
    env = os.environ.get("MLX_RNN_DATA")
    return Path(env) if env else Path("data")


def missing_data_message(data_dir: Path, names) -> str:
    """One-line message for a data directory that lacks the needed files."""
    missing = [n for n in names if not (data_dir / n).is_file()]
    return (f"{data_dir}: data not found (missing {', '.join(missing)}); "
            "pass --data-dir DIR, set MLX_RNN_DATA=DIR, or run scripts/prepare_data.py "
            "(or add --download)")


def check_data_dir(data_dir: Path, names) -> None:
    """Raise DataError (one line, listing the ways out) if any of ``names`` is missing."""
    if not all((Path(data_dir) / n).is_file() for n in names):
        raise DataError(data_dir, missing_data_message(Path(data_dir), names).split(": ", 1)[1])


@dataclass
class ClassificationData:
    """Encoded classification examples.

    Attributes:
        x: int32 array (N, 20) of symbol indices.
        y: int32 array (N,), 0 = consonant follows, 1 = vowel follows.
        texts: the N raw windows.
    """

    x: np.ndarray
    y: np.ndarray
    texts: list[str]


def load_examples(consonant_path, vowel_path, vocab: Indexer = TEXT8) -> ClassificationData:
    """Read and encode a consonant file (label 0) and a vowel file (label 1)."""
    cons = read_examples(consonant_path, vocab)
    vows = read_examples(vowel_path, vocab)
    texts = cons + vows
    x = np.stack([vocab.encode(t) for t in texts]).astype(np.int32)
    y = np.array([0] * len(cons) + [1] * len(vows), dtype=np.int32)
    return ClassificationData(x, y, texts)
