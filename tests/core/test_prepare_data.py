"""scripts/prepare_data.py and mlx_rnn/core/prepare/ and tools/prepare/: text8 checks, windows, atomic output.

The real text8 is 10^8 characters; these tests use a generated text8-shaped file of a
couple of MB (lowercase words and single spaces, no newline). When the standard data
is available (``data_dir`` fixture: MLX_RNN_DATA), the generated file starts with the
standard text8-100k.txt, so ``--text8`` must reproduce that file byte for byte. The
downloads (with pooch, from a loopback HTTP server) are in test_prepare_download.py; the
helpers and fixtures both use are in prepare_helpers.py.
"""

from __future__ import annotations

import hashlib
import os
import random
import zipfile

import numpy as np
import pytest

from mlx_rnn.core.checkpoint import atomic_write_bytes
from mlx_rnn.core.corpus import split_bounds
from mlx_rnn.core.data import DataError, read_examples, read_text
from mlx_rnn.core.normalize import normalize_text
from mlx_rnn.core.vocab import VOWELS
from mlx_rnn.tools.prepare.cli import build_parser
from mlx_rnn.core.prepare.dataset import build_dataset
from mlx_rnn.core.prepare.text8 import (LM_TRAIN_CHARS, TEXT8_100K_SHA256, TEXT8_CHARS, TEXT8_SHA1, TEXT8_URL,
                                         ChecksumError, Text8, check_text8, load_text8)
from tests.core.prepare_helpers import (gen_dir, standard_100k, text8_raw, text8_zip, wrong_text,  # noqa: F401  (fixtures)
                                   wrong_zip)
from tests.core.prepare_helpers import OUTPUTS, assert_error, files_in, generate, make_zip, run, sha256


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


def test_truncated_zip_is_reported_as_a_damaged_archive(tmp_path):
    """A zip cut short (no central directory) is named a damaged archive, not read as text."""
    whole = make_zip(tmp_path / "whole.zip", {"text8": "the quick brown fox " * 500}).read_bytes()
    z = tmp_path / "text8.zip"
    z.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    assert_error(run("--text8", z, "--out", out), 2, str(z), "not a readable zip archive")
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
