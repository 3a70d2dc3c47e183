"""The strict, friendly readers of mlx_rnn.core.data: what they accept transparently and
the one-line ``file:line:col: cause`` errors for everything else."""

from pathlib import Path

import pytest

from mlx_rnn.core.data import (DataError, check_data_dir, load_examples, missing_data_message, read_examples,
                          read_text)
from mlx_rnn.core.vocab import Indexer

W1, W2 = "the cat sat on a mat", " and then it ran awa"  # two 20-character windows


def write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def error(fn, *args, **kw) -> DataError:
    with pytest.raises(DataError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg, msg
    return e.value


# ----- what is accepted ------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    f"{W1}\n{W2}\n",          # plain
    f"{W1}\r\n{W2}\r\n",      # CRLF
    f"\ufeff{W1}\n{W2}\n",    # UTF-8 byte-order mark
    f"{W1}\n{W2}",            # no final newline: the last character is kept
    f"\ufeff{W1}\r\n{W2}",    # all of it
])
def test_examples_accepted(tmp_path, data):
    assert read_examples(write(tmp_path, "ex.txt", data)) == [W1, W2]


def test_examples_keep_edge_spaces(tmp_path):
    lines = [" starts with a space", "ends with a space   "]
    assert read_examples(write(tmp_path, "ex.txt", "\n".join(lines) + "\n")) == lines


@pytest.mark.parametrize("data,want", [
    ("hello world", "hello world"),          # no final newline: nothing lost
    ("hello world\n", "hello world"),        # one trailing newline ignored
    ("hello world\r\n", "hello world"),      # CRLF too
    ("\ufeffhello world\n", "hello world"),  # BOM dropped
    ("x", "x"),
])
def test_text_accepted(tmp_path, data, want):
    assert read_text(write(tmp_path, "t.txt", data)) == want


def test_text_normalize_accepts_newlines_and_capitals(tmp_path):
    p = write(tmp_path, "t.txt", "Hello World.\r\nSecond line\n\n")
    assert read_text(p, normalize=True) == "hello world second line "


def test_load_examples_labels(tmp_path):
    d = load_examples(write(tmp_path, "c.txt", f"{W1}\n"), write(tmp_path, "v.txt", f"{W2}\n{W1}\n"))
    assert d.x.shape == (3, 20) and list(d.y) == [0, 1, 1] and d.texts == [W1, W2, W1]


# ----- what is refused, and how it is said -------------------------------------------------
def test_examples_bad_character_names_it_and_its_place(tmp_path):
    p = write(tmp_path, "ex.txt", f"{W1}\nthe cat saT on a mat\n")
    e = error(read_examples, p)
    assert (e.line, e.col) == (2, 11)
    assert str(e).startswith(f"{p}:2:11: character 'T' (U+0054)")
    assert "--normalize" not in str(e)  # it does not apply to example files


@pytest.mark.parametrize("line,col", [(W1[:-1], 20), (W1 + "x", 21), ("", 1)])
def test_examples_wrong_length(tmp_path, line, col):
    p = write(tmp_path, "ex.txt", f"{W1}\n{line}\n{W2}\n")
    e = error(read_examples, p)
    assert (e.line, e.col) == (2, col)
    assert f"line has {len(line)} characters, expected exactly 20" in str(e)


def test_examples_stray_carriage_return(tmp_path):
    e = error(read_examples, write(tmp_path, "ex.txt", f"{W1}\n{W2[:5]}\r{W2[6:]}\n"))
    assert (e.line, e.col) == (2, 6) and "carriage return" in str(e)


def test_text_newline_inside_needs_normalize(tmp_path):
    p = write(tmp_path, "t.txt", "first line\nsecond\n")
    e = error(read_text, p)
    assert (e.line, e.col) == (1, 11) and "newline" in str(e) and "--normalize" in str(e)
    assert str(e).startswith(f"{p}:1:11: ")
    e = error(read_text, write(tmp_path, "t2.txt", "two trailing newlines\n\n"))
    assert (e.line, e.col) == (1, 22)


def test_text_bad_character_names_it_and_its_place(tmp_path):
    p = write(tmp_path, "t.txt", "hello, world")
    e = error(read_text, p)
    assert str(e) == (f"{p}:1:6: character ',' (U+002C) is not in the vocabulary "
                      "(use --normalize to map text onto a-z and space)")
    e = error(read_text, write(tmp_path, "u.txt", "caf\u00e9"))
    assert (e.line, e.col) == (1, 4) and "'\u00e9' (U+00E9)" in str(e)
    e = error(read_text, write(tmp_path, "tab.txt", "a\tb"))
    assert "'\\t' (U+0009)" in str(e)  # shown escaped, on one line


def test_text_other_vocabulary_no_normalize_hint(tmp_path):
    e = error(read_text, write(tmp_path, "t.txt", "abz"), Indexer("ab"))
    assert (e.line, e.col) == (1, 3) and "--normalize" not in str(e)


@pytest.mark.parametrize("reader", [read_examples, read_text])
@pytest.mark.parametrize("data,cause", [
    (b"", "file is empty"),
    (b"\xef\xbb\xbf", "file is empty"),            # a byte-order mark and nothing else
])
def test_empty(tmp_path, reader, data, cause):
    p = write(tmp_path, "f.txt", data)
    assert str(error(reader, p)) == f"{p}: {cause}"


def test_text_only_a_newline_is_empty(tmp_path):
    p = write(tmp_path, "t.txt", "\n")
    assert str(error(read_text, p)) == f"{p}: file is empty"


@pytest.mark.parametrize("reader", [read_examples, read_text])
def test_missing_and_directory(tmp_path, reader):
    assert str(error(reader, tmp_path / "nope.txt")) == f"{tmp_path / 'nope.txt'}: file not found"
    (tmp_path / "dir.txt").mkdir()
    assert str(error(reader, tmp_path / "dir.txt")) == f"{tmp_path / 'dir.txt'}: is a directory, expected a text file"


@pytest.mark.parametrize("reader", [read_examples, read_text])
def test_not_utf8(tmp_path, reader):
    p = write(tmp_path, "f.txt", W1.encode() + b"\n" + b"caf\xe9 au lait is good\n")  # Latin-1 e-acute
    e = error(reader, p)
    assert (e.line, e.col) == (2, 4)
    assert str(e) == f"{p}:2:4: not valid UTF-8 (byte 0xe9)"


def test_not_utf8_column_counts_characters(tmp_path):
    p = write(tmp_path, "f.txt", "\ufeff\u00e9\u00e9".encode() + b"\xff")
    e = error(read_text, p)
    assert (e.line, e.col) == (1, 3)


def test_unreadable(tmp_path):
    import os

    p = write(tmp_path, "t.txt", "hello")
    p.chmod(0)
    try:
        if os.access(p, os.R_OK):
            pytest.skip("running as a user who can read anything")
        e = error(read_text, p)
        assert str(e).startswith(f"{p}: cannot read")
    finally:
        p.chmod(0o644)


# ----- the data directory -------------------------------------------------------------------
def test_missing_data_message_lists_the_ways_out(tmp_path):
    names = ["a.txt", "b.txt"]
    for where in (tmp_path / "nope", tmp_path):
        msg = missing_data_message(where, names)
        assert "\n" not in msg
        for way in ("--data-dir", "MLX_RNN_DATA", "scripts/prepare_data.py", "--download"):
            assert way in msg, (way, msg)
    (tmp_path / "a.txt").write_text("x")
    assert "missing b.txt" in missing_data_message(tmp_path, names)
    with pytest.raises(DataError, match="missing b.txt"):
        check_data_dir(tmp_path, names)
    (tmp_path / "b.txt").mkdir()  # present but not a file: its reader says what is wrong
    check_data_dir(tmp_path, names)
