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

# DataError lives with the piece-by-piece readers (textread); most modules import it from here
from .textread import DataError, checked_pieces, read_utf8, text_symbols  # noqa: F401
from .vocab import TEXT8, Indexer

EXAMPLE_LENGTH = 20
CLASSIFY_FILES = {
    "train_consonant": "train-consonant-examples.txt",
    "train_vowel": "train-vowel-examples.txt",
    "dev_consonant": "dev-consonant-examples.txt",
    "dev_vowel": "dev-vowel-examples.txt",
}
LM_FILES = {"train": "text8-100k.txt", "dev": "text8-dev.txt"}


def _check_symbols(path, text: str, vocab: Indexer, line: int = 1, col0: int = 1) -> None:
    pos = vocab.first_unknown(text)
    if pos >= 0:
        ch = text[pos]
        raise DataError(path, f"character {ch!r} (U+{ord(ch):04X}) is not in the vocabulary", line, col0 + pos)


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
    text = read_utf8(path)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line
    if not lines:
        raise DataError(path, "file has no example lines")
    for n, line in enumerate(lines, start=1):
        if "\r" in line:
            raise DataError(path, "stray carriage return", n, line.index("\r") + 1)
        if len(line) != length:
            # the column is where the line ends early or where the extra characters begin
            raise DataError(path, f"line has {len(line)} characters, expected exactly {length}",
                            n, min(len(line), length) + 1)
        _check_symbols(path, line, vocab, n)
    return lines


def read_text(path, vocab: Indexer = TEXT8, normalize: bool = False) -> str:
    """Read a language-modelling text file (in pieces: :func:`mlx_rnn.core.textread.checked_pieces`).

    One trailing newline (as editors save files) is ignored. With ``normalize`` the text
    is mapped onto the text8 alphabet first (see :mod:`mlx_rnn.core.normalize`); otherwise any
    other newline or a character outside ``vocab`` is an error.

    Raises:
        DataError: missing/empty file, a directory, a device or FIFO, non-UTF-8 bytes, a stray
            newline, or a character outside ``vocab``.
    """
    return "".join(piece for piece, _ in checked_pieces(path, vocab.symbols, normalize))


def resolve_data_dir(data_dir=None) -> Path:
    """The data directory: ``data_dir``, else ``$MLX_RNN_DATA``, else ``./data``."""
    if data_dir:
        return Path(data_dir)
    env = os.environ.get("MLX_RNN_DATA")
    return Path(env) if env else Path("data")


def missing_data_message(data_dir: Path, names) -> str:
    """One-line message for a data directory that lacks the needed files, listing the ways out."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        what = "data directory not found"
    elif not data_dir.is_dir():
        what = "not a directory"
    else:
        missing = [n for n in names if not (data_dir / n).exists()]
        what = f"data not found (missing {', '.join(missing)})"
    return (f"{data_dir}: {what}; pass --data-dir DIR, set MLX_RNN_DATA=DIR, or run "
            "scripts/prepare_data.py --out DIR to build the files (the trainers also take --download)")


class MissingData(DataError):
    """The trainers' data directory is missing, or holds none of the files needed: the message
    is one line and ``details`` adds a few (what is needed, the ways to get it). A directory
    that lacks only some files gets :func:`missing_data_message`'s one line, naming them."""

    def __init__(self, data_dir, names, given_by: str = ""):
        data_dir = Path(data_dir)
        self.details = []
        if data_dir.is_dir() and any((data_dir / n).exists() for n in names):
            super().__init__(data_dir, missing_data_message(data_dir, names)[len(f"{data_dir}: "):])
            return
        what = ("data directory not found" if not data_dir.exists() else "not a directory" if not data_dir.is_dir()
                else "none of the data files found")
        super().__init__(data_dir, what + (f" ({given_by})" if given_by else ""))
        self.details = [
            f"needed: {', '.join(names)}: text8 files of the course exercise",
            "have them? point at their folder: --data-dir DIR or MLX_RNN_DATA=DIR",
            f"no copy? add --download (or run scripts/prepare_data.py --out {data_dir}): it downloads text8.zip "
            "(31 MB) and builds files of the same shape, with windows of its own",
            "or train the language model on your own UTF-8 text: --train-text FILE",
        ]


def data_dir_given_by(data_dir=None) -> str:
    """Where :func:`resolve_data_dir`'s answer came from, for messages."""
    if data_dir:
        return "from --data-dir"
    if os.environ.get("MLX_RNN_DATA"):
        return "from MLX_RNN_DATA"
    return "the default ./data: no --data-dir given, MLX_RNN_DATA not set"


def data_dir_complete(data_dir: Path, names) -> bool:
    """Whether ``data_dir`` is a directory holding an entry for every one of ``names``.

    An entry that exists but is not a regular file (a directory, say) counts as present:
    its reader then reports exactly what is wrong with it.
    """
    data_dir = Path(data_dir)
    return data_dir.is_dir() and all((data_dir / n).exists() for n in names)


def check_data_dir(data_dir: Path, names) -> None:
    """Raise DataError (one line, listing the ways out) if the directory or any of ``names`` is missing."""
    if not data_dir_complete(data_dir, names):
        msg = missing_data_message(Path(data_dir), names)
        raise DataError(data_dir, msg[len(f"{data_dir}: "):])


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


def corpus_alphabet(path) -> str:
    """The sorted set of symbols of a text file (``--vocab corpus``), read like :func:`read_text`
    without an alphabet check: UTF-8 (BOM dropped), CRLF as LF, one trailing newline ignored.

    Raises:
        DataError: missing/empty file, a directory, a device or FIFO, or non-UTF-8 bytes.
    """
    return text_symbols(path)[0]
