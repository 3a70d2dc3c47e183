"""scripts/prepare_data.py and mlx_rnn/tools/prepare/: text8 checks, windows, atomic output, downloads.

The real text8 is 10^8 characters; these tests use a generated text8-shaped file of a
couple of MB (lowercase words and single spaces, no newline). When the standard data
is available (``data_dir`` fixture: MLX_RNN_DATA), the generated file starts with the
standard text8-100k.txt, so ``--text8`` must reproduce that file byte for byte. The
downloads (with pooch) go to an HTTP server on 127.0.0.1 started in a thread.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core.checkpoint import atomic_write_bytes
from mlx_rnn.core.corpus import split_bounds
from mlx_rnn.core.data import DataError, read_examples, read_text
from mlx_rnn.core.normalize import normalize_text
from mlx_rnn.core.vocab import VOWELS
from mlx_rnn.tools.prepare.cli import build_parser
from mlx_rnn.tools.prepare.dataset import build_dataset
from mlx_rnn.tools.prepare.download import download
from mlx_rnn.tools.prepare.text8 import (LM_TRAIN_CHARS, TEXT8_100K_SHA256, TEXT8_CHARS, TEXT8_SHA1,
                                         TEXT8_URL, TEXT8_ZIP_SHA1, ChecksumError, Text8, check_text8,
                                         load_text8)

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "prepare_data.py"
GEN_CHARS = 2_000_000
OUTPUTS = ("text8-100k.txt", "text8-dev.txt", "text8-test.txt", "train-consonant-examples.txt",
           "train-vowel-examples.txt", "dev-consonant-examples.txt", "dev-vowel-examples.txt",
           "SHA256SUMS")
WORDS = ("the of and one in a to zero nine two is as eight for s five three was by that four "
         "six seven with on are it from or his an be this which at also were first has").split()


# --- helpers ----------------------------------------------------------------------------

def run(*args, timeout=60, **kw):
    """Run prepare_data.py in a subprocess from the repo root."""
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kw)


def assert_error(res, code, *needles):
    """Exit ``code`` with exactly one ``error:`` line containing ``needles``, no traceback."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def generate(prefix: str, n: int, seed: int = 0) -> str:
    """A text8-shaped string of ``n`` chars: ``prefix`` then random words, single spaces."""
    vocab = prefix.split() or list(WORDS)
    rng = random.Random(seed)
    parts, size = [prefix], len(prefix)
    while size < n:
        w = " " + rng.choice(vocab)
        parts.append(w)
        size += len(w)
    return "".join(parts)[:n]


def make_zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def files_in(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def standard_100k(data_dir) -> bytes:
    b = (data_dir / "text8-100k.txt").read_bytes()
    assert len(b) == 100_000 and sha256(b) == TEXT8_100K_SHA256
    return b


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gen")


@pytest.fixture(scope="module")
def text8_raw(standard_100k, gen_dir) -> Path:
    """A 2 MB text8-shaped file that starts with the standard text8-100k.txt."""
    p = gen_dir / "text8"
    p.write_bytes(generate(standard_100k.decode("ascii"), GEN_CHARS).encode("ascii"))
    return p


@pytest.fixture(scope="module")
def text8_zip(text8_raw, gen_dir) -> Path:
    return make_zip(gen_dir / "text8.zip", {"text8": text8_raw.read_bytes()})


@pytest.fixture(scope="module")
def wrong_text() -> str:
    """text8-shaped, but its first 100,000 characters are not text8's."""
    return generate(" not text eight", 300_000, seed=1)


@pytest.fixture(scope="module")
def wrong_zip(wrong_text, gen_dir) -> Path:
    return make_zip(gen_dir / "wrong.zip", {"text8": wrong_text})


# --- loopback HTTP server ---------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "loopback"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        if srv.status != 200:
            self.send_error(srv.status)
            return
        body = srv.payload
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cuts > 0:  # send half the body, then drop the connection
            srv.cuts -= 1
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            if srv.stall is not None:
                srv.stall.wait(20)
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    """``server(payload, cuts=0, stall=None, status=200) -> url``: serve ``payload``, the next
    ``cuts`` times only its first half (then wait for ``stall``, if given, and hang up), or
    answer HTTP ``status``. ``.ranges`` logs the Range header of each request (None when absent)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.payload, httpd.cuts, httpd.stall, httpd.status = b"", 0, None, 200
    httpd.ranges = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def configure(payload: bytes, cuts: int = 0, stall=None, status: int = 200) -> str:
        httpd.payload, httpd.cuts, httpd.stall, httpd.status = payload, cuts, stall, status
        return f"http://127.0.0.1:{httpd.server_address[1]}/text8.zip"

    configure.ranges = httpd.ranges
    yield configure
    if httpd.stall is not None:
        httpd.stall.set()
    httpd.shutdown()
    httpd.server_close()


# --- command line: text8 from a local file ----------------------------------------------

def test_text8_zip_reproduces_standard_100k(text8_zip, text8_raw, standard_100k, tmp_path):
    out = tmp_path / "out"
    res = run("--text8", text8_zip, "--out", out, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "not the full text8" in res.stderr  # a short text8-shaped file is only a warning
    assert files_in(out) == sorted(OUTPUTS)
    assert (out / "text8-100k.txt").read_bytes() == standard_100k

    # SHA256SUMS lists every other file, in sha256sum format
    listing = (out / "SHA256SUMS").read_text().splitlines()
    sums = dict(reversed(line.split("  ")) for line in listing)
    assert sorted(sums) == sorted(OUTPUTS[:-1])
    for name, digest in sums.items():
        assert sha256((out / name).read_bytes()) == digest
    assert sums["text8-100k.txt"] == TEXT8_100K_SHA256

    # the project's readers accept every file, in the standard shapes
    assert len(read_examples(out / "train-consonant-examples.txt")) == 5000
    assert len(read_examples(out / "train-vowel-examples.txt")) == 5000
    assert len(read_examples(out / "dev-consonant-examples.txt")) == 500
    assert len(read_examples(out / "dev-vowel-examples.txt")) == 500
    text = text8_raw.read_text()
    splits = split_bounds(len(text))
    for name, (lo, hi) in (("text8-dev.txt", splits["valid"]), ("text8-test.txt", splits["test"])):
        t = read_text(out / name)
        assert len(t) == 500 and (out / name).read_bytes()[-1:] != b"\n"
        assert lo <= text.find(t, lo) <= hi - 500

    # the raw (unzipped) file gives the very same files
    out2 = tmp_path / "out2"
    res = run("--text8", text8_raw, "--out", out2, "--quiet")
    assert res.returncode == 0, res.stderr
    for name in OUTPUTS:
        assert (out2 / name).read_bytes() == (out / name).read_bytes(), name


def test_wrong_text8_prefix_fails_checksum(wrong_zip, wrong_text, tmp_path):
    out = tmp_path / "out"
    assert_error(run("--text8", wrong_zip, "--out", out), 1, "sha256", TEXT8_100K_SHA256,
                 "not text8")
    raw = tmp_path / "text8"
    raw.write_text(wrong_text)
    assert_error(run("--text8", raw, "--out", out), 1, "not text8")
    assert not out.exists()  # nothing written


def test_text8_checks_are_enforced_in_the_api(wrong_text):
    t = Text8(np.frombuffer(wrong_text.encode(), np.uint8), "", "x")
    with pytest.raises(ChecksumError, match="not text8"):
        check_text8(t)
    short = Text8(np.frombuffer(b"abc def", np.uint8), "", "short")
    with pytest.raises(DataError, match="needs the first 100,000"):
        check_text8(short)


def test_full_size_text_needs_the_published_sha1(standard_100k):
    full = np.full(TEXT8_CHARS, ord(" "), np.uint8)
    full[:LM_TRAIN_CHARS] = np.frombuffer(standard_100k, np.uint8)
    with pytest.raises(ChecksumError, match="sha1 is 0000"):
        check_text8(Text8(full, "0" * 40, "full"))
    assert check_text8(Text8(full, "0" * 40, "full"), check_full_sha1=False) == []
    assert check_text8(Text8(full, TEXT8_SHA1, "full")) == []


@pytest.mark.parametrize("members, message", [
    ({}, "missing member 'text8'"),
    ({"enwik8": "some text"}, "unexpected member name 'enwik8'"),
    ({"text8": "abc", "README": "x"}, "unexpected member 'README'"),
])
def test_zip_member_checks(members, message, tmp_path):
    z = make_zip(tmp_path / "text8.zip", members)
    out = tmp_path / "out"
    assert_error(run("--text8", z, "--out", out), 2, str(z), message)
    assert not out.exists()


def test_member_too_large_and_bad_characters(tmp_path):
    z = make_zip(tmp_path / "big.zip", {"text8": "a" * 1001})
    with pytest.raises(DataError, match="more than text8's 1,000"):
        load_text8(z, max_chars=1000)
    raw = tmp_path / "big"
    raw.write_bytes(b"a" * 1001)
    with pytest.raises(DataError, match="more than text8's 1,000"):
        load_text8(raw, max_chars=1000)
    bad = make_zip(tmp_path / "bad.zip", {"text8": "abc def\nghi"})
    with pytest.raises(DataError) as e:
        load_text8(bad)
    assert str(e.value).startswith(f"{bad}!text8:1:8: character '\\n'")
    # a corrupt member (bad CRC, or a damaged deflate stream) is a failed check
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        z = tmp_path / f"corrupt{compression}.zip"
        with zipfile.ZipFile(z, "w", compression) as zf:
            zf.writestr("text8", generate("", 20_000, seed=6))
        data = bytearray(z.read_bytes())
        data[30 + len("text8") + 100] ^= 0x55  # a byte inside the member's data
        z.write_bytes(bytes(data))
        with pytest.raises(ChecksumError, match="corrupt archive"):
            load_text8(z)
    with pytest.raises(DataError, match="file not found"):
        load_text8(tmp_path / "nope.zip")


def test_text8_loads_member_in_place(tmp_path):
    text = generate("", 50_000, seed=5)
    z = make_zip(tmp_path / "t.zip", {"text8": text})
    t = load_text8(z)
    assert t.data.dtype == np.uint8 and t.data.tobytes() == text.encode()
    assert t.sha1 == hashlib.sha1(text.encode()).hexdigest() and not t.is_full
    assert files_in(tmp_path) == ["t.zip"]  # nothing extracted


# --- windows ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    return np.frombuffer(generate("", 1_000_000, seed=2).encode(), np.uint8)


def test_windows_are_labelled_and_in_their_split(synthetic):
    data = synthetic
    ds = build_dataset(data, seed=3)
    (tr0, tr1), (va0, va1), (te0, te1) = ds.splits["train"], ds.splits["valid"], ds.splits["test"]
    assert (tr1, va1, te1) == (900_000, 950_000, 1_000_000)
    sets = {"train": (ds.train_consonant, ds.train_vowel, tr0, tr1, 5000),
            "dev": (ds.dev_consonant, ds.dev_vowel, va0, va1, 500)}
    for name, (cons, vows, lo, hi, n) in sets.items():
        assert len(cons) == len(vows) == n, name
        for label, windows in ((0, cons), (1, vows)):
            for w in windows:
                assert len(w.text) == 20
                assert data[w.pos:w.pos + 20].tobytes().decode() == w.text
                assert lo <= w.pos and w.pos + 20 < hi  # window and its label in the split
                nxt = chr(data[w.pos + 20])
                assert nxt != " "
                assert (nxt in VOWELS) == bool(label)
        texts = [w.text for w in cons + vows]
        assert len(set(texts)) == len(texts)
    # no dev window comes from the training text or repeats a train window
    assert min(w.pos for w in ds.dev_consonant + ds.dev_vowel) >= tr1
    train_texts = {w.text for w in ds.train_consonant + ds.train_vowel}
    assert not train_texts & {w.text for w in ds.dev_consonant + ds.dev_vowel}
    # LM texts: dev from validation, test from test, each starting a word
    assert va0 <= ds.dev_text_pos <= va1 - 500 and len(ds.dev_text) == 500
    assert te0 <= ds.test_text_pos <= te1 - 500 and len(ds.test_text) == 500
    for pos in (ds.dev_text_pos, ds.test_text_pos):
        assert data[pos - 1] == ord(" ") and data[pos] != ord(" ")
    assert ds.lm_train == data[:100_000].tobytes().decode()


def test_windows_are_deterministic_for_a_seed(synthetic):
    a = build_dataset(synthetic, seed=7).files()
    b = build_dataset(synthetic, seed=7).files()
    c = build_dataset(synthetic, seed=8).files()
    assert a == b
    assert a["text8-100k.txt"] == c["text8-100k.txt"]
    for name in ("train-vowel-examples.txt", "dev-consonant-examples.txt", "text8-dev.txt"):
        assert a[name] != c[name], name


def test_split_fractions():
    s = split_bounds(TEXT8_CHARS)
    assert (s["train"], s["valid"], s["test"]) == ((0, 90_000_000), (90_000_000, 95_000_000),
                                                   (95_000_000, 100_000_000))
    s = split_bounds(1000, (0.5, 0.25, 0.25))
    assert (s["train"], s["valid"], s["test"]) == ((0, 500), (500, 750), (750, 1000))
    for bad in ((0.9, 0.1), (0.9, 0.1, 0.1), (1.0, 0.0, 0.0)):
        with pytest.raises(ValueError):
            split_bounds(1000, bad)


# --- command line: any text ---------------------------------------------------------------

def test_text_input_is_normalised_and_scaled(tmp_path):
    rng = random.Random(4)
    words = ["The", "Quick", "brown", "fox,", "jumps", "over", "1999", "lazy", "dogs.", "Café",
             "naïve", "(and)", "x-ray", "it's", "\n"]
    src = tmp_path / "book.txt"
    src.write_text(" ".join(rng.choice(words) for _ in range(6000)), encoding="utf-8")
    out = tmp_path / "out"
    res = run("--text", src, "--out", out, "--seed", "2")
    assert res.returncode == 0, res.stderr
    assert "scaled down" in res.stderr and "Traceback" not in res.stderr
    assert "wrote" in res.stdout
    clean = normalize_text(src.read_text(encoding="utf-8"))
    lm = read_text(out / "text8-100k.txt")
    assert clean.startswith(lm) and len(lm) == round(0.9 * len(clean))
    n = len(read_examples(out / "train-vowel-examples.txt"))
    assert 10 <= n < 5000
    assert len(read_examples(out / "dev-consonant-examples.txt")) >= 10

    tiny = tmp_path / "tiny.txt"
    tiny.write_text("Far too short. " * 20)
    assert_error(run("--text", tiny, "--out", tmp_path / "o2"), 2, str(tiny), "too few")
    assert_error(run("--text", tmp_path / "missing.txt", "--out", tmp_path / "o2"), 2,
                 "file not found")
    assert not (tmp_path / "o2").exists()


def test_existing_files_need_force(synthetic, tmp_path):
    raw = tmp_path / "t.txt"
    raw.write_bytes(synthetic.tobytes())
    out = tmp_path / "out"
    assert run("--text", raw, "--out", out, "--quiet").returncode == 0
    before = {n: (out / n).read_bytes() for n in OUTPUTS}
    # rerunning with the same inputs is a no-op, not an error
    assert run("--text", raw, "--out", out, "--quiet").returncode == 0
    assert_error(run("--text", raw, "--out", out, "--seed", "1"), 2, "--force")
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before  # nothing touched
    assert run("--text", raw, "--out", out, "--seed", "1", "--force", "--quiet").returncode == 0
    assert (out / "train-vowel-examples.txt").read_bytes() != before["train-vowel-examples.txt"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_bytes(b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert files_in(tmp_path) == ["f.txt"]


def test_usage_errors_and_help():
    res = run("--help")
    assert res.returncode == 0
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
        for opt in action.option_strings:
            assert opt in res.stdout, opt
    assert TEXT8_URL in res.stdout
    # usage errors: argparse's usage line plus one error line, exit 2
    for args, needle in ((["--sha256", "xyz"], "expected 64 hex digits"),
                         (["--text8", "a", "--text", "b"], "not allowed with"),
                         (["--text8", "a", "--url", "http://127.0.0.1:9/x.zip"], "--url only"),
                         (["--split", "0.9,0.2,0.1"], "fractions")):
        res = run(*args)
        assert res.returncode == 2 and needle in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


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
