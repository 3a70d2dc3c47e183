"""Own texts of any size, the reading layer (numpy only): a text read in pieces gives exactly
what reading it whole gave (the same characters, ids, validation blocks, dev tail, error
positions and fingerprint), whatever the piece size; files that are not regular files are
refused before a byte is read; the memory and disk pre-checks count the data."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core import batching, memory, own_text, textcache, textread
from mlx_rnn.core.batching import lm_streams
from mlx_rnn.core.config import make_config
from mlx_rnn.core.data import DataError, read_text
from mlx_rnn.core.normalize import normalize_text
from mlx_rnn.core.taskdata import data_fingerprint, split_validation_blocks
from mlx_rnn.core.vocab import TEXT8, Indexer

BOM = b"\xef\xbb\xbf"
SENTENCE = "Caf\u00e9 \u00bbna\u00efve\u00ab \u2014 \u00fcber \u20ac5, \U0001F600 ok! Stra\u00dfe.\n"
TEXTS = {  # raw bytes as a user's editor might save them
    "multibyte": (SENTENCE * 40).encode(),
    "crlf": (SENTENCE * 30).replace("\n", "\r\n").encode(),
    "bom-no-final-newline": BOM + ("A line.\nAnother, longer line!" * 20).encode(),
    "two-final-newlines": ("the cat sat\n" * 30 + "\n").encode(),
    "lone-cr-and-cr-cr-lf": ("x\ry\r\r\nz 42 " * 40 + "end\r\r\n").encode(),
    "ascii": ("abc def ghi " * 100).encode(),
    "wide-alphabet": ("".join(chr(0x4E00 + i) for i in range(300)) + "\n").encode() * 3,
}
PIECES = (1, 2, 3, 5, 7, 64, textread.PIECE_BYTES)


def old_read(raw: bytes, normalize: bool = False) -> str:
    """How the text was read before the streaming reader: all of it at once."""
    raw = raw[3:] if raw.startswith(BOM) else raw
    text = raw.decode("utf-8").replace("\r\n", "\n")
    if normalize:
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
        return normalize_text(text)
    return text[:-1] if text.endswith("\n") else text


@pytest.fixture(params=PIECES, ids=lambda n: f"piece{n}")
def piece(request, monkeypatch):
    monkeypatch.setattr(textread, "PIECE_BYTES", request.param)
    return request.param


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_streamed_encoding_equals_reading_the_whole_text(name, piece, tmp_path):
    raw = TEXTS[name]
    path = tmp_path / "t.txt"
    path.write_bytes(raw)
    text = old_read(raw)
    symbols = "".join(sorted(set(text)))
    assert textread.text_symbols(path) == (symbols, len(text))
    vocab = Indexer(symbols)
    pieces = list(textread.checked_pieces(path, symbols))
    assert "".join(p for p, _ in pieces) == text
    ids = np.concatenate([i for _, i in pieces])
    assert ids.dtype == (np.uint8 if len(symbols) <= 256 else np.uint16)
    assert np.array_equal(ids.astype(np.int32), vocab.encode(text))
    # --normalize: wikifil's cleaning of the whole text, a space run across two pieces squeezed once
    normalized = "".join(p for p, _ in textread.checked_pieces(path, TEXT8.symbols, normalize=True)) \
        if old_read(raw, True).strip(" ") else None
    assert normalized in (old_read(raw, True), None)


@pytest.mark.parametrize("name", ["multibyte", "crlf", "two-final-newlines"])
def test_lm_data_equals_the_in_memory_split(name, tmp_path, monkeypatch):
    """Validation blocks, dev tail, training ids, their fingerprint and the batches: as before."""
    monkeypatch.setattr(textread, "PIECE_BYTES", 5)
    path = tmp_path / "t.txt"
    path.write_bytes(TEXTS[name] * 3)
    text = old_read(TEXTS[name] * 3)
    cfg = make_config("lm", train_text=str(path), vocab_kind="corpus", embed_dim=8, hidden_size=16, num_layers=1,
                      batch_size=4, seq_len=5)
    d, cfg = own_text.lm_data(cfg, resumed=False, val_fraction=0.1, save_dir=tmp_path / "run")
    assert cfg.vocab == "".join(sorted(set(text) | {" "}))
    body, dev = own_text.split_dev_tail(text)
    train, val = split_validation_blocks(body, 0.1)
    assert d["dev"] == dev and cfg.dev_tail_chars == len(dev) and d["val"] == val
    ids = Indexer(cfg.vocab).encode(train)
    assert len(d["train"]) == len(ids) and np.array_equal(d["train"].read(0, len(ids)), ids)
    assert d["train"].fingerprint() == data_fingerprint(ids)
    for world, rank in ((1, 0), (2, 1)):
        lazy = batching.lm_shard_streams(d["train"], 4, 5, seed=3, epoch=1, rank=rank, world=world)
        whole = lm_streams(ids, 4 * world, 5, seed=3, epoch=1)[rank * 4:(rank + 1) * 4]
        assert np.array_equal(np.asarray(lazy), whole)
    assert d["text_cache"].path.stat().st_size == len(text)  # one byte a symbol


def _old_utf8_position(raw: bytes) -> tuple[int, int, int]:
    """(line, column, byte) of the first invalid UTF-8 byte, as the whole-file reader said."""
    raw = raw[3:] if raw.startswith(BOM) else raw
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        start = raw.rfind(b"\n", 0, e.start) + 1
        return raw[:e.start].count(b"\n") + 1, len(raw[start:e.start].decode("utf-8", "replace")) + 1, raw[e.start]
    raise AssertionError("valid")


@pytest.mark.parametrize("raw", [b"Caf\xe9 au lait\n", "\u00e9t\u00e9\nd\u00e9j\u00e0 vu\n".encode() + b"\xff x",
                                 BOM + "na\u00efve\r\n\u20ac".encode() + b"\xe2\x82", b"ok\n" * 9 + b"\x80"])
def test_invalid_utf8_is_named_at_the_same_line_and_column(raw, piece, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(raw)
    line, col, byte = _old_utf8_position(raw)
    with pytest.raises(DataError) as e:
        read_text(path, Indexer("\n" + "".join(map(chr, range(32, 0x2100)))))
    assert str(e.value) == f"{path}:{line}:{col}: not valid UTF-8 (byte 0x{byte:02x})"


def test_symbol_errors_are_named_at_the_same_line_and_column(piece, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("the cat\r\nsat on\r\nthe m\u00e4t\r\n".encode())
    with pytest.raises(DataError, match=r":1:8: newline inside the text \(use --normalize"):
        read_text(path)
    path.write_text("the cat sat on the m\u00e4t\n", encoding="utf-8")
    with pytest.raises(DataError, match=r":1:21: character '\u00e4' \(U\+00E4\) is not in the vocabulary \(use"):
        read_text(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="file is empty"):
        read_text(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="file is empty"):
        read_text(path)
    with pytest.raises(DataError, match="no letters or digits left after normalisation"):
        read_text(path, normalize=True)


def _non_regular(kind: str, tmp_path: Path) -> Path:
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this system")
        os.mkfifo(tmp_path / "pipe")
        return tmp_path / "pipe"
    if kind == "device":
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero on this system")
        return Path("/dev/zero")
    return tmp_path


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_non_regular_files_are_refused_before_reading(kind, tmp_path):
    """A FIFO would block forever and /dev/zero never end: both are refused at once, by every reader."""
    path = _non_regular(kind, tmp_path)
    cause = {"fifo": "is a named pipe (FIFO), not a regular file", "device": "is a character device, not a regular",
             "directory": "is a directory, expected a text file"}[kind]
    t = time.perf_counter()
    for reader in (read_text, textread.text_symbols, textread.read_utf8, own_text.text_alphabet):
        with pytest.raises(DataError, match=cause.replace("(", r"\(").replace(")", r"\)")):
            reader(path)
    cfg = make_config("lm", train_text=str(path), vocab_kind="corpus")
    with pytest.raises(DataError, match="is a"):
        own_text.lm_data(cfg, resumed=False, val_fraction=0.05)
    assert time.perf_counter() - t < 5


def _cfg(path, **kw):
    return make_config("lm", train_text=str(path), vocab_kind="corpus", embed_dim=8, hidden_size=16, num_layers=1,
                       batch_size=4, seq_len=5, **kw)


def test_the_memory_precheck_counts_the_data(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path / "t.txt")
    est = memory.estimate_bytes(cfg, data_bytes=12345)
    assert est["data"] == 12345 and est["total"] == est["model"] + est["optimizer"] + est["activations"] + 12345
    # the validation blocks and dev text as strings; wider characters take more bytes
    assert own_text.resident_bytes(1000, "ab", 0.1, dev_chars=50) == 100 + 50
    assert own_text.resident_bytes(1000, "a\u20ac", 0.1, dev_chars=50) == 2 * (100 + 50)
    # a text whose validation blocks cannot fit is refused from its size, before a byte is read
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat. " * 8000, encoding="utf-8")
    limit = memory.estimate_bytes(cfg)["total"] + 100
    monkeypatch.setattr(memory, "available_bytes", lambda: (limit, "available memory (MemAvailable)"))
    monkeypatch.setattr(textread, "decoded_pieces", lambda *a, **k: pytest.fail("the text was read"))
    with pytest.raises(ValueError, match=r"not enough memory: .*the validation blocks of t\.txt .*use a shorter text"):
        own_text.lm_data(cfg, resumed=False, val_fraction=0.4, save_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_text_with_no_room_for_its_encoded_form_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat. " * 400, encoding="utf-8")
    monkeypatch.setattr(textcache, "disk_free", lambda p: 1000)
    monkeypatch.setattr(textread, "decoded_pieces", lambda *a, **k: pytest.fail("the text was read"))
    with pytest.raises(DataError, match=r"t\.txt: no room to encode it: .* GB in .*text-cache, which has 0\.0 GB free"):
        own_text.lm_data(_cfg(path), resumed=False, val_fraction=0.05, save_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_cache_is_reused_while_the_text_is_unchanged(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat.\n" * 200, encoding="utf-8")
    (tmp_path / "run").mkdir()  # a checkpoint directory that exists (--resume): the cache goes straight in
    first, _ = own_text.lm_data(_cfg(path), resumed=False, val_fraction=0.05, save_dir=tmp_path / "run")
    ids = tmp_path / "run" / "text-cache" / "train-text.ids"
    stamp = ids.stat().st_mtime_ns
    fp = first["train"].fingerprint()
    assert fp in (tmp_path / "run" / "text-cache" / "train-text.json").read_text()  # remembered for the resume
    calls = []
    real = textread.checked_pieces
    monkeypatch.setattr(textcache, "checked_pieces", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = _cfg(path, vocab=first["text_cache"].meta["vocab"])
    again, _ = own_text.lm_data(cfg, resumed=True, val_fraction=0.05, save_dir=tmp_path / "run")
    assert not calls and ids.stat().st_mtime_ns == stamp and again["train"].fingerprint() == fp
    assert again["val"] == first["val"] and again["dev"] == first["dev"]
    path.write_text("The hat sat on the mat.\n" * 201, encoding="utf-8")  # changed: read again
    changed, _ = own_text.lm_data(cfg, resumed=True, val_fraction=0.05, save_dir=tmp_path / "run")
    assert calls and "hat" in changed["dev"] and changed["train"].fingerprint() != fp


def test_default_dev_text_reads_the_tail_without_the_whole_text(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    text = "".join(f"Line {i}: caf\u00e9, na\u00efve.\n" for i in range(3000))
    path.write_text(text, encoding="utf-8")
    cfg = _cfg(path)
    (tmp_path / "ck").mkdir()
    _, cfg = own_text.lm_data(cfg, resumed=False, val_fraction=0.05, save_dir=tmp_path / "ck")
    assert (tmp_path / "ck" / "text-cache" / "train-text.ids").is_file()
    want = own_text.split_dev_tail(text[:-1])[1]
    monkeypatch.setattr(textread, "PIECE_BYTES", 1000)
    monkeypatch.setattr(own_text, "read_text", lambda *a, **k: pytest.fail("whole text read"), raising=False)
    assert own_text.default_dev_text(cfg, tmp_path / "ck") == (want, path)  # from the encoded text
    assert own_text.default_dev_text(cfg) == (want, path)  # one pass over the text, keeping its tail
    assert own_text.default_dev_text(cfg, tmp_path / "elsewhere") == (want, path)


def test_progress_lines_while_reading_and_none_when_quiet(capsys):
    progress = textread.ReadProgress("[lm] reading big.txt (checking and encoding it)", 3_000_000_000, every_s=0.0)
    progress(1_500_000_000)
    line = capsys.readouterr().err
    assert line.startswith("[lm] reading big.txt (checking and encoding it): 1,500 of 3,000 MB, ") and "MB/s" in line
    assert progress.printed
    quiet = textread.ReadProgress("x", 10, enabled=False, every_s=0.0)
    quiet(5)
    assert capsys.readouterr().err == "" and not quiet.printed


def test_a_new_checkpoint_directory_gets_the_cache_only_once_the_run_is_planned(tmp_path):
    """Written hidden beside the directory, moved in by settle(); discarded with nothing left."""
    path = tmp_path / "t.txt"
    path.write_text("The cat sat on the mat.\n" * 200, encoding="utf-8")
    d, _ = own_text.lm_data(_cfg(path), resumed=False, val_fraction=0.05, save_dir=tmp_path / "runs" / "new")
    staged = d["text_cache"].path.parent
    assert not (tmp_path / "runs").exists() and staged.parent == tmp_path and staged.name.startswith(".text-cache-")
    (tmp_path / "runs" / "new").mkdir(parents=True)
    d["text_cache"].settle(tmp_path / "runs" / "new")
    assert d["text_cache"].path == tmp_path / "runs" / "new" / "text-cache" / "train-text.ids" and not staged.exists()
    assert d["train"].read(0, 5).tolist() == Indexer(d["text_cache"].meta["vocab"]).encode("The c").tolist()
    again, _ = own_text.lm_data(_cfg(path), resumed=False, val_fraction=0.05, save_dir=tmp_path / "other")
    again["text_cache"].discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "t.txt"]
