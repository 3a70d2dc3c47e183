"""Downloading ``text8.zip`` with pooch (:func:`download`), and checking a file's hash.

pooch streams the body into a temporary file beside the destination, checks its hash
(``known_hash``, ``"sha1:..."`` or ``"sha256:..."``) and only then renames it into place,
so the destination is either absent or complete and verified. A failed attempt is
retried from the start (pooch's ``retry_if_failed``); an unfinished download is not
resumed. Framework-neutral.
"""

from __future__ import annotations

import re
import socket
import sys
import urllib.parse
from pathlib import Path

from mlx_rnn.core.data import DataError

from .text8 import TEXT8_ZIP_SHA1, ChecksumError

#: pooch's ``known_hash`` of text8.zip (only its SHA-1 is published; see :mod:`.text8`).
TEXT8_ZIP_HASH = f"sha1:{TEXT8_ZIP_SHA1}"
DEFAULT_RETRIES = 2


def download(url: str, dest, *, known_hash: str | None = TEXT8_ZIP_HASH,
             retries: int = DEFAULT_RETRIES, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` with pooch, checking its hash.

    pooch notes the download, and each retry, on stderr. A failed attempt (connection
    error, HTTP error, wrong hash) is retried ``retries`` times, from the start, waiting
    1, 2, 3, ... s in between. A host name that cannot be resolved (offline) fails at
    once, without retries. A failed or interrupted download leaves no file behind.

    Args:
        url: an ``http://`` or ``https://`` address.
        dest: the final path; its directory is created if needed.
        known_hash: ``"algorithm:hexdigest"`` the file must have (None: not checked).
        retries: how many times a failed attempt is retried (pooch's ``retry_if_failed``).
        timeout: seconds to wait for the server to answer, and between received bytes.
        progress: pooch's tqdm byte progress bar on stderr (only when it is a terminal) and its
            notes ("Downloading file ..."); False (``--quiet``): neither.

    Returns:
        ``Path(dest)``.

    Raises:
        DataError: a bad URL, a host that cannot be resolved, an HTTP error or a failed
            connection (after the retries); one line naming the URL.
        ChecksumError: the downloaded file's hash is not ``known_hash`` (it is deleted).
        OSError: ``dest`` cannot be written (a full disk, say), naming ``dest``.
    """
    dest = Path(dest)
    if not re.match(r"https?://", url, re.IGNORECASE):
        raise DataError(url, "only http:// and https:// addresses can be downloaded")
    _check_host(url, dest)
    import pooch  # (imported only now: it takes about half a second)
    import requests

    downloader = pooch.HTTPDownloader(progressbar=progress and sys.stderr.isatty(), timeout=timeout,
                                      headers={"User-Agent": "mlx-rnn-prepare/2"})
    store = pooch.create(path=dest.parent, base_url="", registry={dest.name: known_hash},
                         urls={dest.name: url}, retry_if_failed=retries)
    tries = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
    logger = pooch.get_logger()
    was_disabled = logger.disabled
    logger.disabled = was_disabled or not progress  # (not setLevel: pooch's logger keeps a stale cache)
    try:
        store.fetch(dest.name, downloader=downloader)
    except requests.HTTPError as e:
        raise DataError(url, f"HTTP error {e.response.status_code} {e.response.reason}{tries}") from None
    except requests.RequestException as e:  # connection refused, dropped, timed out
        raise DataError(url, f"download failed ({_reason(e)}){tries}; nothing kept, "
                             "rerun to try again") from None
    except ValueError as e:  # pooch: the hash does not match (the download is deleted)
        raise ChecksumError(url, _mismatch(str(e), known_hash)) from None
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(dest)) from None
    finally:
        logger.disabled = was_disabled
    return dest


def verify_file(path, known_hash: str) -> None:
    """Check that the file at ``path`` has hash ``known_hash`` (``"algorithm:hexdigest"``).

    Raises:
        ChecksumError: naming the file, the digest found and the one expected.
    """
    import pooch

    algorithm, want = known_hash.split(":")
    got = pooch.file_hash(str(path), alg=algorithm)
    if got != want.lower():
        raise ChecksumError(path, f"{algorithm} is {got}, expected {want.lower()}")


def _check_host(url: str, dest: Path) -> None:
    """DataError at once when the URL's host name cannot be resolved (offline, or mistyped):
    retrying cannot help. Skipped when a proxy (``$http_proxy`` ...) would resolve it."""
    from requests.utils import get_environ_proxies

    parts = urllib.parse.urlparse(url)
    if not parts.hostname or get_environ_proxies(url):
        return
    try:
        socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as e:
        raise DataError(url, f"cannot resolve host {parts.hostname!r} ({e.strerror or e}; offline?); "
                             f"nothing downloaded; when online, rerun to download it to {dest} (kept "
                             "there for later runs), or build the files from a local copy: "
                             "scripts/prepare_data.py --text8 PATH") from None


def _reason(e: BaseException) -> str:
    """The innermost message of a requests/urllib3 error (``.reason`` or ``args[0]``), on one line."""
    while True:
        inner = getattr(e, "reason", None)
        if not isinstance(inner, BaseException):
            inner = e.args[0] if e.args and isinstance(e.args[0], BaseException) else None
        if inner is None:
            break
        e = inner
    text = str(e.args[0]) if e.args else type(e).__name__
    return " ".join(text.split())


def _mismatch(message: str, known_hash: str | None) -> str:
    """Our one-line wording of pooch's hash-mismatch ValueError ``message``."""
    m = re.search(r"but got (\w+)", message)
    if not m or not known_hash:
        return " ".join(message.split())
    algorithm, want = known_hash.split(":")
    return f"downloaded file {algorithm} is {m.group(1)}, expected {want.lower()} (download deleted)"
