"""scripts/prepare_data.py and mlx_rnn/core/prepare/download.py: downloads with pooch.

The downloads go to an HTTP server on 127.0.0.1 started in a thread (the ``server`` fixture of
prepare_helpers.py), which can cut a connection half-way, stall, or answer an HTTP error; the
archives are generated text8-shaped zips (see test_prepare_data.py, which tests the text8 checks,
the windows and the command line on local files).
"""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from mlx_rnn.core.data import DataError
from mlx_rnn.core.prepare.download import download
from mlx_rnn.core.prepare.text8 import TEXT8_ZIP_SHA1, ChecksumError
from tests.core.prepare_helpers import (gen_dir, server, standard_100k, text8_raw, text8_zip,  # noqa: F401  (fixtures)
                                   wrong_text, wrong_zip)
from tests.core.prepare_helpers import OUTPUTS, ROOT, SCRIPT, assert_error, files_in, generate, run, sha256


# --- downloads ----------------------------------------------------------------------------
# pooch downloads to a temporary file beside the target and keeps it only when its hash is
# right; a failed attempt is retried from the start (an unfinished download is not resumed).

@pytest.fixture(scope="module")
def small_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: easy to cut mid-body
        zf.writestr("text8", generate("", 200_000, seed=9))
    return buf.getvalue()


def test_download_ok(server, small_zip, tmp_path):
    url = server(small_zip)
    dest = download(url, tmp_path / "text8.zip", progress=False,
                    known_hash=f"sha256:{sha256(small_zip)}")
    assert dest.read_bytes() == small_zip
    assert server.ranges == [None]
    assert files_in(tmp_path) == ["text8.zip"]


def test_quiet_download_prints_nothing_and_the_default_notes_it(server, small_zip, tmp_path, capsys):
    """progress=False (prepare_data.py --quiet): not even pooch's "Downloading file" note."""
    import pooch

    [handler] = pooch.get_logger().handlers
    old = handler.setStream(sys.stderr)  # (its stream is the stderr of when pooch was imported)
    try:
        url = server(small_zip)
        download(url, tmp_path / "q" / "text8.zip", progress=False, known_hash=f"sha256:{sha256(small_zip)}")
        assert capsys.readouterr().err == ""
        download(url, tmp_path / "v" / "text8.zip", progress=True, known_hash=f"sha256:{sha256(small_zip)}")
        assert "Downloading" in capsys.readouterr().err
    finally:
        handler.setStream(old)


def test_download_checksum_failure_keeps_nothing(server, small_zip, tmp_path):
    url = server(small_zip)
    with pytest.raises(ChecksumError, match="sha256 is") as e:
        download(url, tmp_path / "text8.zip", progress=False, retries=0,
                 known_hash="sha256:" + "0" * 64)
    assert str(e.value).startswith(url) and "download deleted" in str(e.value)
    assert files_in(tmp_path) == []
    with pytest.raises(ChecksumError, match=f"sha1 is .*, expected {TEXT8_ZIP_SHA1}"):  # built-in
        download(url, tmp_path / "text8.zip", progress=False, retries=0)
    assert files_in(tmp_path) == []


def test_download_retries_a_cut_connection_from_the_start(server, small_zip, tmp_path):
    url = server(small_zip, cuts=1)
    dest = download(url, tmp_path / "text8.zip", progress=False, retries=1,
                    known_hash=f"sha256:{sha256(small_zip)}")
    assert server.ranges == [None, None]  # the second request starts over
    assert dest.read_bytes() == small_zip
    assert files_in(tmp_path) == ["text8.zip"]  # no temporary file left


def test_failed_download_leaves_no_file_and_a_rerun_succeeds(server, small_zip, tmp_path):
    """Replaces the hand-written client's resume tests: what is left after a cut connection
    is nothing at all (no partial file to trip over), and running again downloads it."""
    known = f"sha256:{sha256(small_zip)}"
    url = server(small_zip, cuts=5)
    with pytest.raises(DataError, match=r"download failed \(.*\) after 1 retry; nothing kept, rerun") as e:
        download(url, tmp_path / "text8.zip", progress=False, retries=1, known_hash=known)
    assert str(e.value).startswith(url) and "\n" not in str(e.value)
    assert files_in(tmp_path) == []
    server(small_zip)
    assert download(url, tmp_path / "text8.zip", progress=False, known_hash=known).read_bytes() == small_zip
    assert files_in(tmp_path) == ["text8.zip"]
    with pytest.raises(DataError, match="only http"):
        download("ftp://example.org/text8.zip", tmp_path / "x.zip")


def test_download_http_error_and_refused_connection(server, tmp_path):
    url = server(b"", status=404)
    with pytest.raises(DataError, match="HTTP error 404") as e:
        download(url, tmp_path / "text8.zip", progress=False, retries=0)
    assert str(e.value).startswith(url)
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/text8.zip"
    with pytest.raises(DataError, match="download failed .*refused") as e:
        download(url, tmp_path / "text8.zip", progress=False, retries=0)
    assert str(e.value).startswith(url) and "\n" not in str(e.value)
    assert files_in(tmp_path) == []


def test_download_of_an_unresolvable_host_fails_at_once(tmp_path, capfd):
    """Offline (the host name cannot be resolved): one attempt, no retry waits, and the
    message names the file the download would be kept in."""
    t0 = time.perf_counter()
    with pytest.raises(DataError) as info:
        download("http://nonexistent.invalid/text8.zip", tmp_path / "text8.zip", progress=False,
                 retries=5)
    assert time.perf_counter() - t0 < 10  # five retries would wait 1 + 2 + ... s
    msg = str(info.value)
    assert "cannot resolve host 'nonexistent.invalid'" in msg and str(tmp_path / "text8.zip") in msg, msg
    assert "attempt the download again" not in capfd.readouterr().err
    assert files_in(tmp_path) == []


def test_cli_download_offline_fails_fast_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    t0 = time.perf_counter()
    res = run("--url", "http://nonexistent.invalid/text8.zip", "--out", out, "--quiet")
    assert time.perf_counter() - t0 < 30
    assert_error(res, 2, "cannot resolve host", str(out / "text8.zip"))
    assert "retry" not in res.stderr
    assert not out.exists()


def test_cli_download_wrong_sha256_writes_nothing(server, wrong_zip, tmp_path):
    url = server(wrong_zip.read_bytes())
    out = tmp_path / "out"
    assert_error(run("--url", url, "--sha256", "ab" * 32, "--out", out, "--quiet"), 1,
                 "sha256 is", "download deleted")
    assert not out.exists()  # nothing written, not even the directory


def test_cli_download_errors_are_one_line_exit_2(server, small_zip, tmp_path):
    out = tmp_path / "out"
    url = server(b"", status=404)
    assert_error(run("--url", url, "--out", out, "--retries", "0"), 2, url, "HTTP error 404")
    assert not out.exists()
    # the archive passes --sha256 but is a damaged zip: a failed check (1), naming the file
    bad = bytearray(small_zip)
    bad[30 + len("text8") + 100] ^= 0x55
    url = server(bytes(bad))
    assert_error(run("--url", url, "--sha256", sha256(bytes(bad)), "--out", out), 1,
                 str(out / "text8.zip"), "corrupt archive")


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_cli_download_to_a_full_disk_names_the_file(server, small_zip, tmp_path):
    """A write that fails (here: over a file-size limit, as a full disk would) is one line
    naming the file, exit 2, and leaves no file behind."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    url = server(small_zip)
    out = tmp_path / "out"
    out.mkdir()
    res = run("--url", url, "--sha256", sha256(small_zip), "--out", out, "--quiet",
              preexec_fn=limit)
    assert_error(res, 2, str(out / "text8.zip"), "File too large")
    assert files_in(out) == []


def test_cli_download_failure_rerun_and_reuse(server, text8_zip, standard_100k, tmp_path):
    payload = text8_zip.read_bytes()
    url = server(payload, cuts=1)
    out = tmp_path / "out"
    digest = sha256(payload)
    # first run: the connection drops and no retries are allowed -> exit 2, nothing kept
    assert_error(run("--url", url, "--sha256", digest, "--out", out, "--retries", "0"), 2,
                 url, "download failed", "rerun")
    assert not out.exists()
    # second run: the connection drops again, pooch says so and retries from the start
    server(payload, cuts=1)
    res = run("--url", url, "--sha256", digest, "--out", out, "--retries", "1")
    assert res.returncode == 0, res.stderr
    assert "attempt the download again" in res.stderr
    assert server.ranges == [None, None, None]  # never a Range request
    assert (out / "text8.zip").read_bytes() == payload
    assert (out / "text8-100k.txt").read_bytes() == standard_100k
    assert files_in(out) == sorted(OUTPUTS + ("text8.zip",))
    # a third run reuses the verified archive without downloading
    res = run("--url", url, "--sha256", digest, "--out", out, "--quiet")
    assert res.returncode == 0 and "downloaded earlier" in res.stderr
    assert len(server.ranges) == 3


def test_cli_download_replaces_a_corrupt_archive(server, text8_zip, tmp_path):
    payload = text8_zip.read_bytes()
    url = server(payload)
    out = tmp_path / "out"
    out.mkdir()
    (out / "text8.zip").write_bytes(payload[:1000])  # e.g. left by an older version
    res = run("--url", url, "--sha256", sha256(payload), "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "downloading it again" in res.stderr and (out / "text8.zip").read_bytes() == payload


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
def test_ctrl_c_exits_130_and_leaves_no_partial_file(server, small_zip, tmp_path):
    """Replaces "Ctrl-C keeps the partial download": now nothing is left to resume or trip over."""
    stall = threading.Event()
    url = server(small_zip, cuts=1, stall=stall)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--url", url, "--out", str(out),
                             "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while not files_in(out) and time.time() < deadline:  # pooch's temporary file
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        stall.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()  # the temporary file is gone, and the directory it made
