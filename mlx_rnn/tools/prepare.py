"""Build the exercise's data files from text8 (or any text): ``scripts/prepare_data.py``.

Sources (one of):

* ``--text FILE``: any UTF-8 text, cleaned with :func:`mlx_rnn.core.normalize.normalize_text`;
* ``--text8 PATH``: a local ``text8.zip`` or the raw ``text8`` file;
* otherwise ``text8.zip`` is downloaded from :data:`TEXT8_URL` (``--url`` overrides),
  with a progress bar, resuming an interrupted download (HTTP Range into
  ``text8.zip.part``), and verified before use. The archive is kept beside the
  output files so a rerun does not download it again.

Output, into ``--out`` (default: the data directory, see
:func:`mlx_rnn.core.data.resolve_data_dir`), every file written atomically:

* ``text8-100k.txt``: the first 100,000 characters of the text (from text8: byte for
  byte the standard file, checked against :data:`TEXT8_100K_SHA256`);
* ``train-{consonant,vowel}-examples.txt``: 5,000 lines each, a 20-character window
  whose next character in the text is a consonant / a vowel (a, e, i, o, u); windows
  followed by a space are never used;
* ``dev-{consonant,vowel}-examples.txt``: 500 lines each, drawn the same way;
* ``text8-dev.txt`` / ``text8-test.txt``: 500-character texts, no newline, starting at
  the start of a word;
* ``SHA256SUMS``: the sha256 of each file above, in ``sha256sum`` format.

The text is split like the standard text8 benchmark: the first 90 % for training, the
next 5 % validation, the last 5 % test (90M/5M/5M characters of text8's 10^8). Train
windows come from the training part, dev windows and the dev text from the validation
part, the test text from the test part, so no dev example overlaps training text.
Windows are drawn at random positions from ``--seed`` (deterministic); a window text
is used at most once per split and no dev window repeats a train window. A text too
short for the standard sizes gets proportionally fewer examples (with a note); one too
short to be useful is an error.

Exit codes of :func:`main`: 0 success; 1 a checksum failed; 2 bad input or usage, or a
download that could not complete (rerun to resume); 130 interrupted.

Framework-neutral: imports neither mlx nor torch.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from mlx_rnn.core.checkpoint import atomic_write_bytes as ckpt_atomic_write_bytes
from mlx_rnn.core.data import (CLASSIFY_FILES, EXAMPLE_LENGTH, LM_FILES, DataError, _read_utf8, read_text,
                   resolve_data_dir)
from mlx_rnn.core.config import prog_name
from mlx_rnn.core.normalize import normalize_text
from mlx_rnn.core.vocab import VOWELS

# --- text8 identity --------------------------------------------------------------------

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_MEMBER = "text8"
TEXT8_CHARS = 100_000_000
#: Size and SHA-1 of Mahoney's text8.zip. The size is the one TensorFlow's word2vec
#: tutorial checks (``maybe_download('text8.zip', 31344016)``); the SHA-1s of the zip and
#: of its ``text8`` member are the ones dmlc/gluon-nlp verifies after downloading
#: http://mattmahoney.net/dc/text8.zip (``gluonnlp/data/word_embedding_training.py``,
#: class ``Text8``). No public sha256 of the zip was found.
TEXT8_ZIP_BYTES = 31_344_016
TEXT8_ZIP_SHA1 = "6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e"
TEXT8_SHA1 = "0dc3edebc970dcc96137e7deda4d9995af9d93de"
#: sha256 of the standard text8-100k.txt (the first 100,000 characters of text8).
TEXT8_100K_SHA256 = "cf4215bfd474fdffa9944796ac527f0e8f0fd3302da25d5e5c211877c1d2ed4a"

# --- output shape ----------------------------------------------------------------------

LM_TRAIN_CHARS = 100_000
TRAIN_PER_CLASS = 5_000
DEV_PER_CLASS = 500
EVAL_TEXT_CHARS = 500
DEFAULT_SPLIT = (0.9, 0.05, 0.05)
#: Below these a dataset is refused as too small to be useful.
MIN_PER_CLASS = 10
MIN_EVAL_TEXT_CHARS = 50
#: At most one window per this many start positions of a region (keeps windows spread).
WINDOW_SPACING = 8

TEST_TEXT_FILE = "text8-test.txt"
SUMS_FILE = "SHA256SUMS"
OUTPUT_FILES = (LM_FILES["train"], LM_FILES["dev"], TEST_TEXT_FILE, *CLASSIFY_FILES.values())

_CHUNK = 1 << 20
_SPACE = ord(" ")
_ALLOWED = np.zeros(256, dtype=bool)
_ALLOWED[ord("a"):ord("z") + 1] = True
_ALLOWED[_SPACE] = True
_IS_VOWEL = np.zeros(256, dtype=bool)
_IS_VOWEL[[ord(c) for c in VOWELS]] = True
_IS_CONSONANT = np.zeros(256, dtype=bool)
_IS_CONSONANT[ord("a"):ord("z") + 1] = True
_IS_CONSONANT &= ~_IS_VOWEL


class ChecksumError(DataError):
    """Data that failed a checksum or identity check (exit code 1). One-line message."""


class Digest(NamedTuple):
    """An expected file identity: hashlib algorithm name, hex digest, optional size in bytes."""

    algorithm: str
    hexdigest: str
    size: int | None = None


TEXT8_ZIP_DIGEST = Digest("sha1", TEXT8_ZIP_SHA1, TEXT8_ZIP_BYTES)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- file helpers ----------------------------------------------------------------------

def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path, expected: Digest) -> None:
    """Check a file's size and digest.

    Raises:
        ChecksumError: naming the file, what was found and what was expected.
    """
    path = Path(path)
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise ChecksumError(path, f"has {size:,} bytes, expected {expected.size:,}")
    got = file_digest(path, expected.algorithm)
    if got != expected.hexdigest.lower():
        want = expected.hexdigest.lower()
        raise ChecksumError(path, f"{expected.algorithm} is {got}, expected {want}")


def atomic_write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename.

    A reader sees either the old file or the complete new one, never a partial write.

    Raises:
        OSError: if the directory is not writable (the temp file is removed).
    """
    ckpt_atomic_write_bytes(path, data)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows: directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- download --------------------------------------------------------------------------

class _Truncated(Exception):
    """The connection ended before the announced length (retryable)."""


_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def download(url: str, dest, *, expected: Digest | None = TEXT8_ZIP_DIGEST, retries: int = 5,
             retry_wait: float = 1.0, timeout: float = 60.0, progress: bool = True,
             log: Callable[[str], None] = _say) -> Path:
    """Download ``url`` to ``dest`` with resume and verification.

    Bytes go to ``dest + ".part"``. An existing ``.part`` (from an interrupted run) is
    resumed with an HTTP ``Range: bytes=N-`` request; a server that ignores ranges
    (status 200) restarts it from zero. A connection that drops, times out or ends
    early is retried up to ``retries`` times, each resuming where the file ends
    (waits ``retry_wait`` s, doubling, at most 30 s). When complete, the file is
    checked against ``expected`` (skipped when None) and renamed to ``dest``. On
    Ctrl-C the ``.part`` file stays, ready to resume. A host name that cannot be
    resolved (offline) fails at once, after one attempt, naming ``dest``.

    Args:
        url: an ``http://`` or ``https://`` address.
        dest: the final path; its directory must exist.
        expected: size/digest the finished file must have.
        progress: show a tqdm byte progress bar on stderr (only when it is a terminal).

    Returns:
        ``Path(dest)``.

    Raises:
        DataError: a bad URL, an HTTP error, or a download still incomplete after
            ``retries`` retries (the ``.part`` stays for a later resume).
        ChecksumError: the finished file does not match ``expected`` (the ``.part``
            is deleted, since resuming it cannot help).
    """
    dest = Path(dest)
    if not re.match(r"https?://", url, re.IGNORECASE):
        raise DataError(url, "only http:// and https:// addresses can be downloaded")
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        try:
            _fetch(url, part, dest.name, timeout=timeout, progress=progress, log=log)
            break
        except urllib.error.HTTPError as e:
            if e.code not in _RETRYABLE_HTTP:
                raise DataError(url, f"HTTP error {e.code} {e.reason}") from None
            reason = f"HTTP error {e.code} {e.reason}"
        except urllib.error.URLError as e:
            if isinstance(e.reason, socket.gaierror):  # offline, or a mistyped host: retrying cannot help
                raise _unresolvable(url, dest, e.reason) from None
            reason = str(e.reason)
        except (http.client.HTTPException, ConnectionError, TimeoutError, _Truncated) as e:
            reason = str(e) or type(e).__name__
        failures += 1
        have = part.stat().st_size if part.exists() else 0
        if failures > retries:
            raise DataError(url, f"download failed ({reason}) after {retries} retries; "
                                 f"{have:,} bytes kept in {part}, rerun to resume") from None
        wait = min(retry_wait * 2 ** (failures - 1), 30.0)
        log(f"download interrupted ({reason}) at {have:,} bytes; "
            f"resuming in {wait:g} s (retry {failures}/{retries})")
        time.sleep(wait)
    if expected is not None:
        try:
            verify_file(part, expected)
        except ChecksumError as e:
            part.unlink()
            raise ChecksumError(url, f"downloaded file {e.cause} (download deleted)") from None
    os.replace(part, dest)
    _fsync_dir(dest.parent)
    return dest


def _unresolvable(url: str, dest: Path, reason: socket.gaierror) -> DataError:
    host = urllib.parse.urlparse(url).hostname
    return DataError(url, f"cannot resolve host {host!r} ({reason.strerror or reason}; offline?); nothing "
                          f"downloaded; when online, rerun to download it to {dest} (kept there for later runs), "
                          "or build the files from a local copy: scripts/prepare_data.py --text8 PATH")


def _fetch(url: str, part: Path, label: str, *, timeout: float, progress: bool,
           log: Callable[[str], None]) -> None:
    """One attempt: append to (or restart) ``part`` until the server's body ends."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "mlx-rnn-prepare/1", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable: complete already, or stale
            m = re.search(r"/(\d+)", e.headers.get("Content-Range", "") or "")
            if m and int(m.group(1)) == offset:
                return
            log(f"server refused to resume {part.name}; starting over")
            part.unlink()
            raise _Truncated("range not satisfiable") from None
        raise
    with resp:
        total = None
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and resp.status == 206:
            m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                log(f"server resumed {part.name} at the wrong place; starting over")
                part.unlink()
                raise _Truncated("bad Content-Range")
            total = int(m.group(3)) if m.group(3) != "*" else (
                offset + length if length is not None else None)
            mode = "ab"
        else:
            if offset:
                log(f"server does not support resuming; downloading {part.name} again")
            offset, mode = 0, "wb"
            total = length
        got = offset
        with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                         unit_divisor=1024, desc=label, leave=False,
                                         disable=None if progress else True) as bar:
            try:
                while True:
                    chunk = resp.read(64 * 1024)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            finally:
                f.flush()
                os.fsync(f.fileno())
    if total is not None and got < total:
        raise _Truncated(f"connection closed after {got:,} of {total:,} bytes")


# --- reading text8 ---------------------------------------------------------------------

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
        size = path.stat().st_size
        if size > max_chars:
            raise DataError(path, f"has {size:,} bytes, more than text8's {max_chars:,}")
        with open(path, "rb") as f:
            return _read_stream(f, size, str(path))
    try:
        with zipfile.ZipFile(path) as zf:
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
            info = files[names.index(member)]
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


def _read_stream(f, size: int, label: str) -> Text8:
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


# --- building the dataset --------------------------------------------------------------

class Window(NamedTuple):
    """One classification example: ``text`` = the 20 characters at ``pos`` of the source."""

    pos: int
    text: str


@dataclass
class Splits:
    """Character ranges ``[start, stop)`` of the source text."""

    train: tuple[int, int]
    valid: tuple[int, int]
    test: tuple[int, int]


def split_bounds(n: int, fractions=DEFAULT_SPLIT) -> Splits:
    """Split ``n`` characters into consecutive train/validation/test ranges by ``fractions``.

    With ``n = 10**8`` and the default (0.9, 0.05, 0.05) this is text8's standard
    90M/5M/5M split. Boundaries are rounded to whole characters.

    Raises:
        ValueError: not three fractions, a negative or zero one, or a sum above 1.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) <= 0 or sum(fr) > 1 + 1e-9:
        raise ValueError(f"split fractions must be three positive numbers summing to at most 1, "
                         f"got {fractions}")
    a = round(n * fr[0])
    b = round(n * (fr[0] + fr[1]))
    c = min(n, round(n * (fr[0] + fr[1] + fr[2])))
    return Splits((0, a), (a, b), (b, c))


@dataclass
class Dataset:
    """The built data, before writing.

    Attributes:
        lm_train: the LM training text (``text8-100k.txt``), up to 100,000 characters.
        dev_text / test_text: the 500-character LM dev and test texts.
        dev_text_pos / test_text_pos: where they start in the source.
        train_consonant, train_vowel, dev_consonant, dev_vowel: the windows.
        splits: the source ranges they were drawn from.
        notes: messages for the user (scaled-down sizes, shortfalls).
    """

    lm_train: str
    dev_text: str
    dev_text_pos: int
    test_text: str
    test_text_pos: int
    train_consonant: list[Window]
    train_vowel: list[Window]
    dev_consonant: list[Window]
    dev_vowel: list[Window]
    splits: Splits
    notes: list[str] = field(default_factory=list)

    def files(self) -> dict[str, bytes]:
        """File name -> content: text files without newline, example files one window a line."""
        def lines(ws):
            return "".join(w.text + "\n" for w in ws).encode("ascii")

        return {
            LM_FILES["train"]: self.lm_train.encode("ascii"),
            LM_FILES["dev"]: self.dev_text.encode("ascii"),
            TEST_TEXT_FILE: self.test_text.encode("ascii"),
            CLASSIFY_FILES["train_consonant"]: lines(self.train_consonant),
            CLASSIFY_FILES["train_vowel"]: lines(self.train_vowel),
            CLASSIFY_FILES["dev_consonant"]: lines(self.dev_consonant),
            CLASSIFY_FILES["dev_vowel"]: lines(self.dev_vowel),
        }


def build_dataset(data: np.ndarray, *, seed: int = 0, fractions=DEFAULT_SPLIT) -> Dataset:
    """Draw the LM texts and classification windows from a text over a-z and space.

    Args:
        data: uint8 array (N,) of ASCII codes, only a-z and space.
        seed: the random seed; the same data, seed and fractions give the same dataset.
        fractions: train/validation/test fractions of N (see :func:`split_bounds`).

    Returns:
        A :class:`Dataset`. Sizes are the standard ones (5,000 + 5,000 train windows,
        500 + 500 dev, 500-character texts) when the text is long enough; otherwise each
        is scaled to its part of the text (at most one window per 8 start positions,
        texts at most half the part), with a note.

    Raises:
        DataError: the text is too short for at least 10 windows per class and
            50-character dev/test texts, or has too few windows of one class.
    """
    data = np.asarray(data, dtype=np.uint8)
    n = int(data.size)
    splits = split_bounds(n, fractions)
    (tr0, tr1), (va0, va1), (te0, te1) = splits.train, splits.valid, splits.test
    notes: list[str] = []

    n_train = min(TRAIN_PER_CLASS, max(0, tr1 - tr0 - EXAMPLE_LENGTH) // WINDOW_SPACING)
    n_dev = min(DEV_PER_CLASS, max(0, va1 - va0 - EXAMPLE_LENGTH) // WINDOW_SPACING)
    dev_len = min(EVAL_TEXT_CHARS, (va1 - va0) // 2)
    test_len = min(EVAL_TEXT_CHARS, (te1 - te0) // 2)
    if min(n_train, n_dev) < MIN_PER_CLASS or min(dev_len, test_len) < MIN_EVAL_TEXT_CHARS:
        need = _min_length(fractions)
        raise DataError("<text>", f"has {n:,} characters, too few to build a dataset "
                                  f"(need at least about {need:,})")
    if (n_train, n_dev, dev_len, test_len) != (TRAIN_PER_CLASS, DEV_PER_CLASS,
                                               EVAL_TEXT_CHARS, EVAL_TEXT_CHARS):
        notes.append(f"note: the text has {n:,} characters, too few for the standard sizes; "
                     f"scaled down to {n_train:,}+{n_train:,} train and {n_dev:,}+{n_dev:,} dev "
                     f"windows, {dev_len}-character dev and {test_len}-character test texts")

    seeds = np.random.SeedSequence(seed).spawn(4)
    rngs = [np.random.default_rng(s) for s in seeds]
    dev_pos = _pick_text(data, va0, va1, dev_len, rngs[0])
    test_pos = _pick_text(data, te0, te1, test_len, rngs[1])
    tr_c, tr_v = _draw_windows(data, tr0, tr1, n_train, rngs[2])
    seen = {w.text for w in tr_c} | {w.text for w in tr_v}
    dv_c, dv_v = _draw_windows(data, va0, va1, n_dev, rngs[3], avoid=seen)
    for name, got, want in (("train consonant", tr_c, n_train), ("train vowel", tr_v, n_train),
                            ("dev consonant", dv_c, n_dev), ("dev vowel", dv_v, n_dev)):
        if len(got) < MIN_PER_CLASS:
            raise DataError("<text>", f"found only {len(got)} distinct {name} windows in its "
                                      f"part of the text (need at least {MIN_PER_CLASS})")
        if len(got) < want:
            notes.append(f"note: found only {len(got):,} distinct {name} windows "
                         f"(wanted {want:,})")
    lm_len = min(LM_TRAIN_CHARS, tr1 - tr0)
    return Dataset(
        lm_train=data[tr0:tr0 + lm_len].tobytes().decode("ascii"),
        dev_text=data[dev_pos:dev_pos + dev_len].tobytes().decode("ascii"),
        dev_text_pos=dev_pos,
        test_text=data[test_pos:test_pos + test_len].tobytes().decode("ascii"),
        test_text_pos=test_pos,
        train_consonant=tr_c, train_vowel=tr_v, dev_consonant=dv_c, dev_vowel=dv_v,
        splits=splits, notes=notes)


def _min_length(fractions) -> int:
    """Smallest text length that passes :func:`build_dataset`'s size checks."""
    need_part = EXAMPLE_LENGTH + MIN_PER_CLASS * WINDOW_SPACING
    fr = tuple(float(f) for f in fractions)
    return int(max(need_part / fr[0], need_part / fr[1],
                   2 * MIN_EVAL_TEXT_CHARS / fr[1], 2 * MIN_EVAL_TEXT_CHARS / fr[2])) + 1


def _pick_text(data: np.ndarray, lo: int, hi: int, length: int, rng) -> int:
    """Start of a ``length``-character slice inside ``[lo, hi)``, at a word start if possible."""
    last = hi - length
    p = int(rng.integers(lo, last + 1))
    region = data[lo:last + 1]
    prev = data[lo - 1:last] if lo > 0 else np.concatenate(([_SPACE], data[:last]))
    starts = np.flatnonzero((region != _SPACE) & (prev == _SPACE)) + lo
    if starts.size == 0:
        return p
    i = int(np.searchsorted(starts, p))
    return int(starts[i]) if i < starts.size else int(starts[-1])


_EXHAUSTIVE = 4_000_000
_BATCH = 1 << 16


def _candidates(rng, lo: int, count: int, want: int):
    """Random window starts in ``[lo, lo + count)``, in batches.

    A small range is visited exhaustively in a random order; a large one is sampled
    with replacement (duplicates are dropped by the caller), up to a generous cap.
    """
    if count <= _EXHAUSTIVE:
        order = rng.permutation(count) + lo
        for i in range(0, count, _BATCH):
            yield order[i:i + _BATCH]
        return
    drawn, cap = 0, max(50 * want, 4 * _BATCH)
    while drawn < cap:
        yield rng.integers(lo, lo + count, size=_BATCH)
        drawn += _BATCH


def _draw_windows(data: np.ndarray, lo: int, hi: int, per_class: int, rng,
                  avoid: set[str] | frozenset = frozenset()) -> tuple[list[Window], list[Window]]:
    """Up to ``per_class`` consonant and vowel windows, each wholly inside ``[lo, hi)``.

    A window is the 20 characters at ``p``; the character at ``p + 20`` (also inside
    the range) decides its class and must be a letter. Window texts are distinct and
    not in ``avoid``. Returns (consonant windows, vowel windows), in draw order.
    """
    count = hi - lo - EXAMPLE_LENGTH  # starts p with p + 20 < hi
    cons: list[Window] = []
    vows: list[Window] = []
    if count <= 0 or per_class <= 0:
        return cons, vows
    seen = set(avoid)
    for starts in _candidates(rng, lo, count, 2 * per_class):
        nxt = data[starts + EXAMPLE_LENGTH]
        vowel = _IS_VOWEL[nxt]
        keep = vowel | _IS_CONSONANT[nxt]
        for p, v in zip(starts[keep].tolist(), vowel[keep].tolist()):
            target = vows if v else cons
            if len(target) >= per_class:
                continue
            text = data[p:p + EXAMPLE_LENGTH].tobytes().decode("ascii")
            if text in seen:
                continue
            seen.add(text)
            target.append(Window(p, text))
        if len(cons) >= per_class and len(vows) >= per_class:
            break
    return cons, vows


# --- writing ---------------------------------------------------------------------------

def sha256sums(files: dict[str, bytes]) -> bytes:
    """``sha256sum``-format listing (``hex  name``), sorted by name."""
    return "".join(f"{hashlib.sha256(files[k]).hexdigest()}  {k}\n"
                   for k in sorted(files)).encode("ascii")


def write_files(files: dict[str, bytes], out_dir, *, force: bool = False) -> list[Path]:
    """Write ``files`` and their ``SHA256SUMS`` into ``out_dir``, each atomically.

    Nothing is written unless every file can be: an existing file with different
    content is only replaced with ``force``; identical ones are left untouched.

    Returns:
        The paths of all files (written or already identical), SHA256SUMS last.

    Raises:
        DataError: ``out_dir`` is a file, or a file exists with other content and
            ``force`` is false.
        OSError: the directory cannot be created or written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a directory")
    allfiles = dict(files)
    allfiles[SUMS_FILE] = sha256sums(files)
    todo = []
    for name, content in allfiles.items():
        p = out / name
        if p.is_file() and p.stat().st_size == len(content) and p.read_bytes() == content:
            continue
        if p.exists() and not force:
            raise DataError(p, "exists with different content; pass --force to overwrite "
                               "(or choose another --out)")
        todo.append(name)
    out.mkdir(parents=True, exist_ok=True)
    for name in todo:  # SHA256SUMS is last in allfiles, so it is written last
        atomic_write(out / name, allfiles[name])
    return [out / name for name in allfiles]


# --- the whole job ---------------------------------------------------------------------

@dataclass
class Report:
    """What :func:`prepare` did: the source description, the dataset and the paths written."""

    source: str
    dataset: Dataset
    paths: list[Path]
    archive: Path | None = None


def prepare(out_dir, *, text8=None, text=None, url: str = TEXT8_URL, sha256: str | None = None,
            seed: int = 0, fractions=DEFAULT_SPLIT, force: bool = False,
            fold_accents: bool = False, retries: int = 5, retry_wait: float = 1.0,
            progress: bool = True, log: Callable[[str], None] = _say) -> Report:
    """Build and write the data files (see the module docstring).

    Args:
        out_dir: where to write; created if needed. A download is kept there too.
        text8: path of a local text8.zip or raw text8 (else it is downloaded).
        text: path of any UTF-8 text to normalise and use instead of text8.
        url: address of text8.zip.
        sha256: expected sha256 of the archive (downloaded or ``text8``). Replaces the
            built-in identity of text8.zip and of its full member; the text8-100k.txt
            check always applies.
        seed: random seed for the windows and texts.
        fractions: train/validation/test fractions of the text.
        force: overwrite existing output files that differ.
        fold_accents: with ``text``, spell accented letters without accents.
        retries, retry_wait: download retries and the first wait between them (s).
        progress: show a download progress bar.
        log: where notes go (default: stderr).

    Returns:
        A :class:`Report`.

    Raises:
        DataError: bad input (exit code 2), including a download that failed.
        ChecksumError: a checksum failed (exit code 1); nothing was written.
        OSError: the output directory cannot be written.
    """
    if text is not None and text8 is not None:
        raise ValueError("pass at most one of text and text8")
    out = Path(out_dir)
    split_bounds(TEXT8_CHARS, fractions)  # validate early
    archive = None
    if text is not None:
        if fold_accents:
            cleaned = normalize_text(_read_utf8(text), fold_accents=True)
            if not cleaned:
                raise DataError(text, "no text left after normalisation")
        else:
            cleaned = read_text(text, normalize=True)
        data = np.frombuffer(cleaned.encode("ascii"), dtype=np.uint8)
        source, where = f"{text} (normalised, {data.size:,} characters)", text
        notes = []
    else:
        expected = Digest("sha256", sha256.lower()) if sha256 else None
        if text8 is None:
            expected = expected or TEXT8_ZIP_DIGEST
            name = Path(urllib.parse.urlparse(url).path).name
            if not name or name in OUTPUT_FILES or name == SUMS_FILE:
                name = "text8.zip"
            if out.exists() and not out.is_dir():
                raise DataError(out, "exists and is not a directory")
            created = not out.exists()
            out.mkdir(parents=True, exist_ok=True)
            archive = out / name
            try:
                if archive.exists():
                    try:
                        verify_file(archive, expected)
                    except ChecksumError as e:
                        raise ChecksumError(archive, f"(downloaded earlier) {e.cause}; delete it "
                                                     "to download again") from None
                    log(f"using {archive} (downloaded earlier, checksum OK)")
                else:
                    log(f"downloading {url} to {archive}")
                    download(url, archive, expected=expected, retries=retries,
                             retry_wait=retry_wait, progress=progress, log=log)
            except BaseException:
                if created and not any(out.iterdir()):
                    out.rmdir()
                raise
            src = archive
        else:
            src = Path(text8)
            if expected is not None and src.is_file():
                verify_file(src, expected)
        t8 = load_text8(src)
        # --sha256 vouches for the archive, so it also replaces the full-text SHA-1.
        notes = check_text8(t8, check_full_sha1=sha256 is None)
        data = t8.data
        source, where = f"{t8.label} ({data.size:,} characters)", t8.label
    for note in notes:
        log(note)
    try:
        ds = build_dataset(data, seed=seed, fractions=fractions)
    except DataError as e:
        raise DataError(where, e.cause) from None
    if text is not None and len(ds.lm_train) < LM_TRAIN_CHARS:
        ds.notes.append(f"note: {LM_FILES['train']} has {len(ds.lm_train):,} characters "
                        f"(the whole training part), not {LM_TRAIN_CHARS:,}")
    for note in ds.notes:
        log(note)
    paths = write_files(ds.files(), out, force=force)
    return Report(source, ds, paths, archive)


# --- command line ----------------------------------------------------------------------

def _fractions(s: str):
    try:
        fr = tuple(float(x) for x in s.split(","))
        split_bounds(TEXT8_CHARS, fr)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected three positive fractions summing to at most 1, like 0.9,0.05,0.05; "
            f"got {s!r}") from None
    return fr


def _hex64(s: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", s):
        raise argparse.ArgumentTypeError(f"expected 64 hex digits, got {s!r}")
    return s.lower()


def _nonneg(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The ``prepare_data.py`` argument parser."""
    p = argparse.ArgumentParser(
        prog=prog_name("prepare_data.py"),
        description=(
            "Build the exercise's data files from text8 (downloaded, or a local copy) or from "
            "any text: text8-100k.txt (the first 100,000 characters; from text8 byte for byte "
            "the standard file), 5,000+5,000 train and 500+500 dev classification windows "
            "(20 characters, the next one a consonant / a vowel), 500-character text8-dev.txt "
            "and text8-test.txt, and SHA256SUMS. The text is split 90/5/5 % into train, "
            "validation and test parts (text8's standard 90M/5M/5M): train windows come from "
            "the train part, dev windows and the dev text from the validation part, the test "
            "text from the test part. Exit codes: 0 ok, 1 checksum failed, 2 bad input or "
            "usage or a failed download, 130 interrupted."),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text8", metavar="PATH",
                     help="use this local text8.zip (its one member 'text8' is streamed, not "
                          "extracted) or raw text8 file instead of downloading. A shorter "
                          "text8-shaped file (a-z and single spaces, starting with text8's first "
                          "100,000 characters) is accepted with a warning")
    src.add_argument("--text", metavar="FILE",
                     help="use any UTF-8 text file instead of text8: lowercased, digits spelled "
                          "out, every other character a space (text8's own cleaning); short "
                          "texts get proportionally fewer examples")
    p.add_argument("--out", metavar="DIR",
                   help="directory to write the files into, created if missing (default: the "
                        "data directory: --data-dir, else $MLX_RNN_DATA, else ./data)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="the data directory, used as the default --out (default: $MLX_RNN_DATA, "
                        "else ./data)")
    p.add_argument("--url", default=None,
                   help=f"address to download text8.zip from when neither --text8 nor --text is "
                        f"given (default: {TEXT8_URL}). The archive is saved in the output "
                        "directory (as text8.zip.part while downloading; an interrupted download "
                        "resumes with an HTTP Range request) and reused by later runs")
    p.add_argument("--sha256", type=_hex64, metavar="HEX",
                   help="expected SHA-256 of the archive (the download or the --text8 file); "
                        "replaces the built-in checks of text8.zip (31,344,016 bytes, SHA-1 "
                        f"{TEXT8_ZIP_SHA1}) and of its full text (SHA-1 {TEXT8_SHA1}). The "
                        "text8-100k.txt checksum is always checked")
    p.add_argument("--seed", type=_nonneg, default=0,
                   help="random seed for choosing windows and texts; the same input and seed give "
                        "the same files (default: %(default)s)")
    p.add_argument("--split", type=_fractions, default=DEFAULT_SPLIT, metavar="TRAIN,VALID,TEST",
                   help="fractions of the text for the train, validation and test parts, in "
                        "that order (default: 0.9,0.05,0.05, text8's standard split)")
    p.add_argument("--fold-accents", action="store_true",
                   help="with --text: spell accented letters without accents (é -> e, ß -> "
                        "ss) instead of turning them into spaces as text8 does")
    p.add_argument("--force", action="store_true",
                   help="overwrite output files that exist with different content (identical "
                        "files are always left as they are)")
    p.add_argument("--retries", type=_nonneg, default=5,
                   help="how many times to resume a download whose connection fails, waiting "
                        "1, 2, 4, ... s in between (default: %(default)s)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary of the files written (notes, warnings "
                        "and errors still print)")
    return p


def main(argv=None) -> int:
    """Command-line entry point; returns the exit code (0, 1, 2 or 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url is not None and (args.text8 or args.text):
        parser.error("--url only applies when downloading (without --text8 or --text)")
    if args.sha256 and args.text:
        parser.error("--sha256 checks text8 archives; it does not apply to --text")
    if args.fold_accents and not args.text:
        parser.error("--fold-accents only applies to --text")
    out = Path(args.out) if args.out else resolve_data_dir(args.data_dir)
    try:
        report = prepare(out, text8=args.text8, text=args.text, url=args.url or TEXT8_URL,
                         sha256=args.sha256, seed=args.seed, fractions=args.split,
                         force=args.force, fold_accents=args.fold_accents,
                         retries=args.retries, progress=not args.quiet)
    except ChecksumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (a partial download is kept and resumes on the next run)",
              file=sys.stderr)
        return 130
    if not args.quiet:
        ds = report.dataset
        (a, b), (c, d), (e_, f) = ds.splits.train, ds.splits.valid, ds.splits.test
        print(f"source: {report.source}; seed {args.seed}; train [{a:,}, {b:,}), "
              f"validation [{c:,}, {d:,}), test [{e_:,}, {f:,})")
        counts = {LM_FILES["train"]: f"{len(ds.lm_train):,} chars",
                  LM_FILES["dev"]: f"{len(ds.dev_text):,} chars from {ds.dev_text_pos:,}",
                  TEST_TEXT_FILE: f"{len(ds.test_text):,} chars from {ds.test_text_pos:,}",
                  CLASSIFY_FILES["train_consonant"]: f"{len(ds.train_consonant):,} lines",
                  CLASSIFY_FILES["train_vowel"]: f"{len(ds.train_vowel):,} lines",
                  CLASSIFY_FILES["dev_consonant"]: f"{len(ds.dev_consonant):,} lines",
                  CLASSIFY_FILES["dev_vowel"]: f"{len(ds.dev_vowel):,} lines"}
        for path in report.paths:
            print(f"wrote {path}" + (f" ({counts[path.name]})" if path.name in counts else ""))
        if report.archive is not None:
            print(f"kept {report.archive} (delete it to save space; reruns reuse it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
