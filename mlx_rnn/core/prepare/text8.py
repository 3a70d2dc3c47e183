"""text8's identity (address, checksums) and reading it: :func:`load_text8`, :func:`check_text8`.

text8 is the first 10^8 characters of English Wikipedia cleaned to a-z and single spaces,
published as ``text8.zip`` holding one member, ``text8``. Framework-neutral.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlx_rnn.core.corpus import TEXT8_CHARS
from mlx_rnn.core.data import DataError

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_MEMBER = "text8"
#: Size and SHA-1 of Mahoney's text8.zip. The size is the one TensorFlow's word2vec
#: tutorial checks (``maybe_download('text8.zip', 31344016)``); the SHA-1s of the zip and
#: of its ``text8`` member are the ones dmlc/gluon-nlp verifies after downloading
#: http://mattmahoney.net/dc/text8.zip (``gluonnlp/data/word_embedding_training.py``,
#: class ``Text8``). No public sha256 of the zip was found.
TEXT8_ZIP_BYTES = 31_344_016
TEXT8_ZIP_SHA1 = "6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e"
TEXT8_SHA1 = "0dc3edebc970dcc96137e7deda4d9995af9d93de"
#: The standard text8-100k.txt: the first 100,000 characters of text8, and their sha256.
LM_TRAIN_CHARS = 100_000
TEXT8_100K_SHA256 = "cf4215bfd474fdffa9944796ac527f0e8f0fd3302da25d5e5c211877c1d2ed4a"

_CHUNK = 1 << 20
_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[ord("a"):ord("z") + 1] = True
_ALLOWED[ord(" ")] = True


class ChecksumError(DataError):
    """Data that failed a checksum or identity check (exit code 1). One-line message."""


@dataclass
class Text8:
    """text8 (or a text8-shaped file) read into memory.

    Attributes:
        data: uint8 array of shape (N,), the ASCII codes (a-z and space only).
        sha1: SHA-1 hex digest of those N bytes.
        label: where it came from, for messages (``"text8.zip!text8"`` or a path).
    """

    data: np.ndarray
    sha1: str
    label: str

    @property
    def is_full(self) -> bool:
        """True when this has text8's full 10^8 characters."""
        return self.data.size == TEXT8_CHARS


def load_text8(path, *, member: str = TEXT8_MEMBER, max_chars: int = TEXT8_CHARS) -> Text8:
    """Read text8 from a zip archive (streamed from the member, never extracted) or a raw file.

    The text is read in 1 MiB chunks into one preallocated buffer, checking the alphabet
    and hashing as it goes, so the peak memory is about the text's size (100 MB for text8).

    Args:
        path: ``text8.zip`` (exactly one member, named ``member``) or the raw text.
        max_chars: the most characters accepted (text8 has 10^8).

    Raises:
        DataError: file missing, a zip without ``member`` or with another member, a
            member or file over ``max_chars``, or a character other than a-z and space
            (message ``file:1:col: ...``).
        ChecksumError: a corrupt archive (bad CRC or damaged compressed data).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a directory, expected text8.zip or the text8 file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip's first local header, but no readable directory
                raise DataError(path, "not a readable zip archive (truncated or damaged?)")
        size = path.stat().st_size
        if size > max_chars:
            raise DataError(path, f"has {size:,} bytes, more than text8's {max_chars:,}")
        with open(path, "rb") as f:
            return _read_stream(f, size, str(path))
    try:
        with zipfile.ZipFile(path) as zf:
            info = _only_member(zf, path, member)
            label = f"{path}!{member}"
            if info.file_size > max_chars:
                raise DataError(label, f"member has {info.file_size:,} bytes, more than "
                                       f"text8's {max_chars:,}")
            with zf.open(info) as f:
                return _read_stream(f, info.file_size, label)
    except zipfile.BadZipFile as e:
        if "CRC" in str(e):
            raise ChecksumError(path, f"corrupt archive: {e}") from None
        raise DataError(path, f"not a readable zip archive: {e}") from None
    except (zlib.error, EOFError) as e:  # a damaged compressed stream
        raise ChecksumError(path, f"corrupt archive: {e}") from None


def _only_member(zf: zipfile.ZipFile, path: Path, member: str) -> zipfile.ZipInfo:
    """The archive's one file, which must be named ``member``; DataError otherwise."""
    files = [i for i in zf.infolist() if not i.is_dir()]
    if not files:
        raise DataError(path, f"zip archive is empty, missing member {member!r}")
    names = [i.filename for i in files]
    if member not in names:
        found = ", ".join(map(repr, names[:5])) + (", ..." if len(names) > 5 else "")
        raise DataError(path, f"missing member {member!r} (unexpected member name "
                              f"{found}; text8.zip holds only {member!r})")
    extra = [n for n in names if n != member]
    if extra:
        raise DataError(path, f"unexpected member {extra[0]!r} beside {member!r} "
                              f"(text8.zip holds only {member!r})")
    return files[names.index(member)]


def _read_stream(f, size: int, label: str) -> Text8:
    """Read ``size`` bytes from binary file ``f``, checking the alphabet and hashing as it goes."""
    buf = np.empty(size, dtype=np.uint8)
    view = memoryview(buf)
    sha1 = hashlib.sha1()
    n = 0
    while n < size:
        k = f.readinto(view[n:min(n + _CHUNK, size)])
        if not k:
            break
        bad = np.flatnonzero(~_ALLOWED[buf[n:n + k]])
        if bad.size:
            pos = n + int(bad[0])
            ch = chr(buf[pos])
            raise DataError(label, f"character {ch!r} (byte 0x{buf[pos]:02x}) is not in the "
                                   "text8 alphabet (a-z and space); for other text use --text",
                            1, pos + 1)
        sha1.update(view[n:n + k])
        n += k
    if n != size or f.read(1):
        raise DataError(label, f"size changed while reading (expected {size:,} bytes)")
    return Text8(buf, sha1.hexdigest(), label)


def check_text8(text8: Text8, *, check_full_sha1: bool = True) -> list[str]:
    """Check that ``text8`` really is text8; return notes for the user.

    The first 100,000 characters must hash to :data:`TEXT8_100K_SHA256` (so
    ``text8-100k.txt`` is the standard file). With all 10^8 characters and
    ``check_full_sha1``, their SHA-1 must be :data:`TEXT8_SHA1`. A shorter text is
    accepted with a note that it is not the full text8.

    Raises:
        DataError: fewer than 100,000 characters.
        ChecksumError: the prefix or the full text has the wrong digest.
    """
    n = text8.data.size
    if n < LM_TRAIN_CHARS:
        raise DataError(text8.label, f"has {n:,} characters; text8 has {TEXT8_CHARS:,} and "
                                     f"text8-100k.txt needs the first {LM_TRAIN_CHARS:,}")
    got = hashlib.sha256(memoryview(text8.data[:LM_TRAIN_CHARS])).hexdigest()
    if got != TEXT8_100K_SHA256:
        raise ChecksumError(text8.label, f"first {LM_TRAIN_CHARS:,} characters have sha256 {got}, "
                                         f"expected {TEXT8_100K_SHA256} (the standard "
                                         "text8-100k.txt): this is not text8")
    notes = []
    if text8.is_full:
        if check_full_sha1 and text8.sha1 != TEXT8_SHA1:
            raise ChecksumError(text8.label, f"sha1 is {text8.sha1}, expected {TEXT8_SHA1} "
                                             "(text8 as published)")
    else:
        notes.append(f"note: {text8.label} has {n:,} characters, not the full text8's "
                     f"{TEXT8_CHARS:,}; splitting it by the same fractions")
    return notes
