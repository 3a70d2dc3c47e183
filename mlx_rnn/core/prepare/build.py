"""The whole job (:func:`prepare`): get the text, build the dataset, write the files.

The text is any UTF-8 file (``text``, cleaned with
:func:`mlx_rnn.core.normalize.normalize_text`), a local ``text8.zip`` or raw ``text8``
(``text8``), or else ``text8.zip`` downloaded from ``url`` into the output directory
and kept there for later runs. Every file is written atomically
(:func:`mlx_rnn.core.checkpoint.atomic_write_bytes`), with a ``SHA256SUMS`` listing.
Framework-neutral.
"""

from __future__ import annotations

import hashlib
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mlx_rnn.core.checkpoint import atomic_write_bytes
from mlx_rnn.core.corpus import SPLIT_FRACTIONS, TEXT8_CHARS, split_bounds
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, DataError, read_text
from mlx_rnn.core.textread import read_utf8
from mlx_rnn.core.normalize import normalize_text

from .dataset import TEST_TEXT_FILE, Dataset, build_dataset
from .download import DEFAULT_RETRIES, TEXT8_ZIP_HASH, download, verify_file
from .text8 import LM_TRAIN_CHARS, TEXT8_URL, ChecksumError, check_text8, load_text8

SUMS_FILE = "SHA256SUMS"
OUTPUT_FILES = (LM_FILES["train"], LM_FILES["dev"], TEST_TEXT_FILE, *CLASSIFY_FILES.values())


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Report:
    """What :func:`prepare` did: the source description, the dataset and the paths written."""

    source: str
    dataset: Dataset
    paths: list[Path]
    archive: Path | None = None


def prepare(out_dir, *, text8=None, text=None, url: str = TEXT8_URL, sha256: str | None = None,
            seed: int = 0, fractions=SPLIT_FRACTIONS, force: bool = False,
            fold_accents: bool = False, retries: int = DEFAULT_RETRIES, progress: bool = True,
            log: Callable[[str], None] = _say) -> Report:
    """Build and write the data files (see :mod:`mlx_rnn.core.prepare`).

    Args:
        out_dir: where to write; created if needed. A download is kept there too.
        text8: path of a local text8.zip or raw text8 (else it is downloaded).
        text: path of any UTF-8 text to normalise and use instead of text8.
        url: address of text8.zip.
        sha256: expected sha256 (hex) of the archive (downloaded or ``text8``). Replaces
            the built-in identity of text8.zip and of its full member; the
            text8-100k.txt check always applies.
        seed: random seed for the windows and texts.
        fractions: train/validation/test fractions of the text.
        force: overwrite existing output files that differ.
        fold_accents: with ``text``, spell accented letters without accents.
        retries: download retries (each from the start).
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
        data, source, where = _read_any_text(text, fold_accents)
    else:
        if text8 is None:
            known_hash = f"sha256:{sha256}" if sha256 else TEXT8_ZIP_HASH
            text8 = archive = _fetch_archive(out, url, known_hash, retries, progress, log)
        elif sha256 is not None and Path(text8).is_file():
            verify_file(text8, f"sha256:{sha256}")
        t8 = load_text8(text8)
        # --sha256 vouches for the archive, so it also replaces the full-text SHA-1.
        for note in check_text8(t8, check_full_sha1=sha256 is None):
            log(note)
        data, source, where = t8.data, f"{t8.label} ({t8.data.size:,} characters)", t8.label
    try:
        ds = build_dataset(data, seed=seed, fractions=fractions)
    except DataError as e:
        raise DataError(where, e.cause) from None
    if len(ds.lm_train) < LM_TRAIN_CHARS:  # a short source: not the standard file, whatever its start
        ds.notes.append(f"note: {LM_FILES['train']} has {len(ds.lm_train):,} characters "
                        f"(the whole training part), not {LM_TRAIN_CHARS:,}"
                        + ("" if text is not None else ", so it is not the standard text8-100k.txt"))
    for note in ds.notes:
        log(note)
    paths = write_files(ds.files(), out, force=force)
    return Report(source, ds, paths, archive)


def _read_any_text(path, fold_accents: bool) -> tuple[np.ndarray, str, str]:
    """(uint8 codes (N,), source description, label) of UTF-8 text file ``path``, normalised.

    Raises:
        DataError: the file is missing, unreadable, not UTF-8, or empty after normalising.
    """
    if fold_accents:
        cleaned = normalize_text(read_utf8(path), fold_accents=True)
        if not cleaned:
            raise DataError(path, "no text left after normalisation")
    else:
        cleaned = read_text(path, normalize=True)
    data = np.frombuffer(cleaned.encode("ascii"), dtype=np.uint8)
    return data, f"{path} (normalised, {data.size:,} characters)", str(path)


def _fetch_archive(out: Path, url: str, known_hash: str, retries: int, progress: bool,
                   log: Callable[[str], None]) -> Path:
    """``out/text8.zip`` (named after the URL): reused when its hash is ``known_hash``, else
    downloaded (:func:`.download.download`). A download that fails removes ``out`` again
    if it created it and left it empty.

    Raises:
        DataError, ChecksumError, OSError: as :func:`.download.download`; DataError too
            when ``out`` is a file.
    """
    name = Path(urllib.parse.urlparse(url).path).name
    if not name or name in OUTPUT_FILES or name == SUMS_FILE:
        name = "text8.zip"
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a directory")
    archive = out / name
    if archive.is_file():
        try:
            verify_file(archive, known_hash)
            log(f"using {archive} (downloaded earlier, checksum OK)")
            return archive
        except ChecksumError as e:
            log(f"{archive} (downloaded earlier) {e.cause}; downloading it again")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return download(url, archive, known_hash=known_hash, retries=retries, progress=progress)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()
        raise


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
        atomic_write_bytes(out / name, allfiles[name])
    return [out / name for name in allfiles]
