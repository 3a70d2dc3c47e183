"""The full-text8 recipe (--corpus text8 PATH): memory-mapped splits, lazy LM streams,
batched evaluation, and the trainer end to end on a generated text8-shaped file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core import corpus

from mlx_rnn.core import batching, distributed
from mlx_rnn.core.batching import lm_chunk, lm_streams
from mlx_rnn.core.config import make_config
from mlx_rnn.core.data import DataError
from mlx_rnn.core.vocab import TEXT8
from tests.conftest import ROOT

WORDS = ["the", "of", "and", "one", "in", "a", "to", "zero", "nine", "two", "is", "as", "eight", "for", "s",
         "five", "three", "was", "by", "that", "four", "six", "seven", "with", "on", "are", "it", "from"]


def make_text8_like(path: Path, num_chars: int, seed: int = 0) -> Path:
    """A text8-shaped file: words of a-z separated by single spaces, no newline, Zipf-ish word counts."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    out = bytearray(b" ")
    while len(out) < num_chars:
        out += (" ".join(WORDS[i] for i in rng.choice(len(WORDS), size=8192, p=p)) + " ").encode()
    path.write_bytes(bytes(out[:num_chars]))
    return path


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    return make_text8_like(tmp_path_factory.mktemp("c") / "text8", 6_000)


@pytest.fixture(scope="module")
def mb_file(tmp_path_factory) -> Path:
    """1.2 MB: one epoch of a tiny LM in seconds on 2 cores (splits scale by 0.9/0.05/0.05)."""
    return make_text8_like(tmp_path_factory.mktemp("c") / "text8", 1_200_000, seed=1)


def test_few_mb_file_maps_and_splits(tmp_path):
    path = make_text8_like(tmp_path / "text8", 3_000_000, seed=2)
    c = corpus.Text8Corpus(path)  # every byte checked, in pieces
    assert [(s.start, s.stop) for s in c.splits.values()] == [(0, 2_700_000), (2_700_000, 2_850_000),
                                                              (2_850_000, 3_000_000)]
    assert c.test.text(0, 30) == path.read_bytes()[2_850_000:2_850_030].decode()
    assert len(c.train.fingerprint()) == 64


def test_standard_split_and_scaled_split():
    assert corpus.split_bounds(100_000_000) == {"train": (0, 90_000_000), "valid": (90_000_000, 95_000_000),
                                                "test": (95_000_000, 100_000_000)}
    assert corpus.split_bounds(3_000_000) == {"train": (0, 2_700_000), "valid": (2_700_000, 2_850_000),
                                              "test": (2_850_000, 3_000_000)}


def test_memmap_reads_match_encoding(small_file):
    c = corpus.Text8Corpus(small_file)
    text = small_file.read_text()
    assert len(c) == len(text) == 6000
    assert [len(c.splits[s]) for s in corpus.SPLITS] == [5400, 300, 300]
    np.testing.assert_array_equal(c.read(0, len(c)), TEXT8.encode(text))
    np.testing.assert_array_equal(c.valid.read(10, 50), TEXT8.encode(text[5410:5450]))
    assert c.test.text() == text[5700:]
    assert c.describe()["standard_split"] is False
    assert isinstance(c.bytes, np.memmap)  # mapped, not loaded


def test_trailing_newline_ignored_and_bad_bytes_rejected(tmp_path):
    good = tmp_path / "ok"
    good.write_bytes(b" hello world" * 10 + b"\n")
    assert len(corpus.Text8Corpus(good)) == 120
    bad = tmp_path / "bad"
    bad.write_bytes(b" hello world" * 10 + b"X" + b" abc" * 10)
    with pytest.raises(DataError, match="offset 120"):
        corpus.Text8Corpus(bad)
    with pytest.raises(DataError, match="file not found"):
        corpus.Text8Corpus(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown corpus"):
        corpus.open_corpus(["enwik8", str(good)])


@pytest.mark.parametrize("world", [1, 2])
def test_lazy_streams_equal_in_memory_layout(small_file, world):
    c = corpus.Text8Corpus(small_file)
    ids = c.train.read(0, len(c.train))
    for epoch in range(3):
        full = lm_streams(ids, 4 * world, 16, 7, epoch)
        for rank in range(world):
            lazy = batching.lm_shard_streams(c.train, 4, 16, 7, epoch, rank, world)
            assert isinstance(lazy, batching.LazyStreams)
            want = full[rank * 4:(rank + 1) * 4]
            assert lazy.shape == want.shape
            np.testing.assert_array_equal(np.asarray(lazy), want)
            x, y = lm_chunk(lazy, 5, 16)
            wx, wy = lm_chunk(want, 5, 16)
            np.testing.assert_array_equal(x, wx)
            np.testing.assert_array_equal(y, wy)
    plain = lm_streams(ids, 4 * world, 16, 0, 0, random_offset=False)
    assert batching.lm_steps(len(c.train), 4, 16, world) == (plain.shape[1] - 1) // 16 - 1


def _lm_wrapper(framework: str, cell: str = "lstm"):
    cfg = make_config("lm", embed_dim=8, hidden_size=16, seed=0, cell=cell)
    if framework == "mlx":
        import mlx.core as mx

        from mlx_rnn.models import build_model, wrap

        mx.random.seed(0)
    else:
        torch = pytest.importorskip("torch")
        from torch_ref.models import build_model, wrap

        torch.manual_seed(0)
    return wrap(build_model(cfg), cfg)


@pytest.mark.parametrize("framework,cell", [("mlx", "lstm"), ("torch", "lstm"), ("mlx", "gru")])
def test_batched_evaluation_matches_one_pass(small_file, framework, cell):
    """One stream = the LM API's one pass over the split; more streams, chunks and ranks change
    only the few characters after each stream start."""
    w = _lm_wrapper(framework, cell)
    c = corpus.Text8Corpus(small_file)
    ref = w.get_log_prob_sequence(c.valid.text(), " ")
    one = corpus.evaluate_split(w, c.valid, streams=1, chunk=64)
    assert one["chars"] == 300
    assert abs(one["log_prob"] - ref) < 1e-3 * abs(ref)
    many = corpus.evaluate_split(w, c.valid, streams=7, chunk=16)  # 7 streams of 42 + a tail of 6
    assert abs(many["log_prob"] - ref) < 0.02 * abs(ref)
    # sharded over two (simulated) ranks: the partial sums add up to the one-process figure
    parts = [corpus.evaluate_split(w, c.valid, streams=7, chunk=16,
                                   dist=distributed.DistInfo(rank=r, world_size=2, all_sum=lambda v: v, timeout_s=0))
             for r in (0, 1)]
    assert abs(sum(p["log_prob"] for p in parts) - many["log_prob"]) < 1e-6 * abs(ref)


def _run(cmd, timeout=240):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_trainer_on_generated_corpus(mb_file, tmp_path):
    """train_mlx.py --corpus text8 PATH on a generated text8-shaped file: one epoch, valid/test bpc reported."""
    out = tmp_path / "r.json"
    proc = _run([sys.executable, "scripts/train_mlx.py", "--task", "lm", "--corpus", "text8", str(mb_file),
                 "--epochs", "1", "--embed-dim", "8", "--hidden-size", "16", "--batch-size", "256", "--seq-len", "64",
                 "--lr", "0.01", "--quiet", "--output-json", str(out), "--save", str(tmp_path / "ck"),
                 "--data-dir", str(tmp_path / "no-data-needed")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lm = json.loads(out.read_text())["lm"]
    for key in ("sane", "normalizes", "log_prob", "avg_log_prob", "perplexity", "bits_per_char",
                "valid_bits_per_char", "test_bits_per_char"):
        assert key in lm, key
    assert lm["test_bits_per_char"] == lm["bits_per_char"]
    assert lm["corpus"]["splits"] == {"train": [0, 1_080_000], "valid": [1_080_000, 1_140_000],
                                      "test": [1_140_000, 1_200_000]}
    assert lm["valid_bits_per_char"] < np.log2(27) - 0.5  # learned something in one epoch
    assert lm["config"]["corpus"] == ["text8", str(mb_file.resolve())]
    assert (tmp_path / "ck" / "model.safetensors").is_file()


def test_corpus_bad_name_is_usage_error(small_file):
    proc = _run([sys.executable, "scripts/train_mlx.py", "--task", "lm", "--corpus", "enwik8", str(small_file)],
                timeout=120)
    assert proc.returncode == 2 and "unknown corpus" in proc.stderr and "Traceback" not in proc.stderr
