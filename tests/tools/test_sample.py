"""Sampling: greedy, determinism for a seed, MLX and PyTorch agree, bad prime rejected."""

import subprocess
import sys

import numpy as np
import pytest

import mlx.core as mx

from mlx_rnn.core.config import make_config
from mlx_rnn.core.checkpoint import save_checkpoint
from mlx_rnn.models import build_model
from mlx_rnn.core.sampling import choose
from mlx_rnn.core.vocab import TEXT8
from tests.conftest import ROOT

CONFIG = make_config("lm", embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    mx.random.seed(0)
    model = build_model(CONFIG)
    path = tmp_path_factory.mktemp("lm")
    save_checkpoint(path, model.weights(), CONFIG.to_json())
    return path


def test_choose():
    rng = np.random.default_rng(0)
    lp = np.log(np.array([0.1, 0.6, 0.3]))
    assert choose(lp, 0.0, None, rng) == 1
    picks = [choose(lp, 1.0, 2, rng) for _ in range(200)]
    assert set(picks) <= {1, 2} and picks.count(1) > picks.count(2)
    with pytest.raises(ValueError):
        choose(lp, -1.0, None, rng)


def test_greedy_follows_argmax_and_seed_is_deterministic(checkpoint):
    import mlx_rnn

    lm = mlx_rnn.load(checkpoint)
    greedy = lm.sample("the ", 10, temperature=0.0)
    text = "the "
    for _ in range(10):
        text += TEXT8.get_object(int(np.argmax(lm.get_next_char_log_probs(text))))
    assert greedy == text[4:]
    assert lm.sample("the ", 50, 1.0, None, seed=7) == lm.sample("the ", 50, 1.0, None, seed=7)
    assert lm.sample("the ", 50, 1.0, None, seed=7) != lm.sample("the ", 50, 1.0, None, seed=8)
    with pytest.raises(ValueError, match="'T'"):
        lm.sample("The", 5)


def test_mlx_and_torch_sample_the_same_text(checkpoint):
    torch_ref = pytest.importorskip("torch_ref")
    import mlx_rnn

    a = mlx_rnn.load(checkpoint).sample(" a ", 40, 0.8, 5, seed=3)
    b = torch_ref.load(checkpoint).sample(" a ", 40, 0.8, 5, seed=3)
    assert a == b


def test_sample_script(checkpoint):
    out = subprocess.run([sys.executable, "scripts/sample.py", "--checkpoint", str(checkpoint), "--prime", "abc",
                          "--length", "20", "--seed", "1", "--no-prime"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.rstrip("\n")) == 20 and TEXT8.first_unknown(out.stdout.rstrip("\n")) == -1
    bad = subprocess.run([sys.executable, "scripts/sample.py", "--checkpoint", str(checkpoint), "--prime", "a!"],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "'!'" in bad.stderr and "Traceback" not in bad.stderr
    for flag in ("--length", "--seed", "--top-k"):
        neg = subprocess.run([sys.executable, "scripts/sample.py", "--checkpoint", str(checkpoint), flag, "-1"],
                             cwd=ROOT, capture_output=True, text=True)
        assert neg.returncode == 2 and neg.stderr.strip() == f"error: {flag} must be >= 0 (got -1)", neg.stderr
    huge = subprocess.run([sys.executable, "scripts/sample.py", "--checkpoint", str(checkpoint), "--length",
                           "99999999999999999999"], cwd=ROOT, capture_output=True, text=True)
    assert huge.returncode == 2 and huge.stderr.strip() == \
        "error: --length must be at most 10,000,000 (got 99999999999999999999)", huge.stderr
    assert bad.stdout == ""  # the prime is checked before anything is printed


def test_the_stream_is_the_sampled_text(checkpoint):
    import mlx_rnn

    torch_ref = pytest.importorskip("torch_ref")
    for lib in (mlx_rnn, torch_ref):
        lm = lib.load(checkpoint)
        rng, text = np.random.default_rng(3), " a "  # the same draws, from the whole text each time
        for _ in range(30):
            text += TEXT8.get_object(choose(lm.get_next_char_log_probs(text), 0.8, 5, rng))
        assert "".join(lm.sample_stream(" a ", 30, 0.8, 5, seed=3)) == text[3:]
        assert list(lm.sample_stream(" a ", 0)) == []
        with pytest.raises(ValueError, match="'!'"):
            next(lm.sample_stream("a!", 5))


def test_a_long_sample_prints_as_it_goes_and_stops_on_sigterm(checkpoint):
    """sample.py prints symbols as they are drawn: SIGTERM keeps what was printed, says so, exit 130."""
    import signal

    proc = subprocess.Popen([sys.executable, "scripts/sample.py", "--checkpoint", str(checkpoint), "--length",
                             "10000000", "--no-prime"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    first = proc.stdout.read(64)  # returns once 64 symbols were flushed: printing started
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted by SIGTERM"
    text = (first + rest).rstrip("\n")
    assert len(text) >= 64 and TEXT8.first_unknown(text) == -1


def test_main_puts_the_sigterm_handler_back(checkpoint, capsys):
    """sample.py and evaluate.py turn SIGTERM into an interrupt while they run, and put the handler
    that was there back (their main may run inside another program, such as this test process)."""
    import signal

    from mlx_rnn.tools import evaluate, sample

    before = signal.getsignal(signal.SIGTERM)
    assert sample.main(["--checkpoint", str(checkpoint), "--length", "3"]) == 0
    assert evaluate.main(["--checkpoint", str(checkpoint), "--text", "/nonexistent/text.txt"]) == 2
    assert signal.getsignal(signal.SIGTERM) == before
    capsys.readouterr()
