"""Helpers of the data-preparation tests (test_prepare_data.py, test_prepare_download.py):
running scripts/prepare_data.py, its one-line errors, generated text8-shaped text and zips, the
module-scoped text8 fixtures, and the loopback HTTP server (the ``server`` fixture) that the
downloads go to. A test module imports the fixtures it uses together with those they depend on.
"""

from __future__ import annotations

import hashlib
import http.server
import random
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from mlx_rnn.core.prepare.text8 import TEXT8_100K_SHA256

ROOT = Path(__file__).resolve().parents[2]  # the repository
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
