"""--train-text FILE [--dev-text FILE]: the LM on any UTF-8 text, with its own alphabet, in both
trainers; sample.py and evaluate.py on the result, in both frameworks; bad input exits 2 in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_rnn.core import own_text
from mlx_rnn.core.taskdata import split_validation_blocks
from tests.synthetic import TINY, error_line, run_script

pytest.importorskip("torch")

_SENTENCES = ("The Cat sat on the mat.", "A dog, barking loudly, ran past!", "Why? Because it could: 42 times.",
              "New lines matter; so do CAPITALS.", "\"Quoted\" words (and brackets) too.", "Café au lait, s'il vous plaît.")


def make_own_text(n_lines: int = 90, seed: int = 0) -> str:
    """Lines of two or three sentences: capitals, punctuation, digits, accents and newlines."""
    rng = np.random.default_rng(seed)
    return "".join(" ".join(_SENTENCES[i] for i in rng.integers(len(_SENTENCES), size=rng.integers(2, 4))) + "\n"
                   for _ in range(n_lines))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("own") / "my text.txt"
    path.write_text(make_own_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(text_file, tmp_path_factory, one_torch_thread):
    """One tiny checkpoint per trainer, trained on the text alone (no data directory given)."""
    from mlx_rnn.run.cli import main

    out = {}
    for script in ("train_mlx", "train_torch"):
        d = tmp_path_factory.mktemp(script)
        argv = ["--train-text", str(text_file), "--epochs", "1", "--save", str(d / "ck"), "--output-json",
                str(d / "r.json"), "--data-dir", str(d / "no-data-here"), *TINY]
        assert main(script.split("_")[1], argv) == 0
        out[script] = (d / "ck", json.loads((d / "r.json").read_text())["lm"])
    return out


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_train_text_trains_with_its_own_alphabet(trained, text_file, script):
    ck, lm = trained[script]
    cfg = json.loads((ck / "config.json").read_text())
    text = text_file.read_text(encoding="utf-8").rstrip("\n")
    assert cfg["vocab"] == "".join(sorted(set(text))) and cfg["vocab_kind"] == "corpus"
    assert {"\n", "T", "C", ".", ",", "!", "?", '"', "é", "4"} <= set(cfg["vocab"])
    assert cfg["train_text"] == str(text_file.resolve()) and cfg["dev_text"] is None
    tail = own_text.split_dev_tail(text)[1]
    assert cfg["dev_tail_chars"] == len(tail) == round(0.1 * len(text))
    assert lm["sane"] and lm["normalizes"] and np.isfinite(lm["perplexity"]) and lm["perplexity"] < len(cfg["vocab"])
    assert (ck / "metrics.jsonl").is_file()


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_sample_and_evaluate_the_checkpoint_in_both_frameworks(trained, script, capsys, one_torch_thread):
    from mlx_rnn.tools.evaluate import main as evaluate
    from mlx_rnn.tools.sample import main as sample

    ck, lm = trained[script]
    vocab = json.loads((ck / "config.json").read_text())["vocab"]
    samples = []
    for fw in ("mlx", "torch"):
        assert sample(["--checkpoint", str(ck), "--prime", "The Cat.\nA", "--length", "60", "--seed", "3",
                       "--framework", fw, "--no-prime"]) == 0
        samples.append(capsys.readouterr().out[:-1])  # print's newline
        # no --text: the checkpoint's own dev text (the held-out tail), the figure training reported
        assert evaluate(["--checkpoint", str(ck), "--framework", fw]) == 0
        ev = json.loads(capsys.readouterr().out)["lm"]
        assert ev["perplexity"] == pytest.approx(lm["perplexity"], rel=1e-4)
        assert ev["sane"] and ev["normalizes"]
    assert len(samples[0]) == 60 and set(samples[0]) <= set(vocab)
    assert samples[0] == samples[1]  # one checkpoint, same seed: the same text in both frameworks


def test_dev_text_file(text_file, tmp_path, capsys, one_torch_thread):
    from mlx_rnn.tools.evaluate import main as evaluate
    from mlx_rnn.run.cli import main

    dev = tmp_path / "dev.txt"
    dev.write_text("Why? The Cat, loudly.\nA dog sat.\n", encoding="utf-8")
    ck = tmp_path / "ck"
    assert main("torch", ["--train-text", str(text_file), "--dev-text", str(dev), "--epochs", "1", "--save", str(ck),
                          "--output-json", str(tmp_path / "r.json"), *TINY]) == 0
    capsys.readouterr()
    lm = json.loads((tmp_path / "r.json").read_text())["lm"]
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["dev_text"] == str(dev.resolve()) and cfg["dev_tail_chars"] is None
    assert evaluate(["--checkpoint", str(ck)]) == 0  # its dev file by default, in MLX
    assert json.loads(capsys.readouterr().out)["lm"]["perplexity"] == pytest.approx(lm["perplexity"], rel=1e-4)


def test_no_space_in_the_text_still_gives_a_start_context(tmp_path):
    path = tmp_path / "dna.txt"
    path.write_text("ACGT" * 50, encoding="utf-8")
    assert own_text.text_alphabet(path) == " ACGT"


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# (extra flags with {t}: the good text, {f}: the bad file; the bad file's content; expected message after "error: ")
BAD = {
    "missing": (["--train-text", "{f}"], None, "{f}: file not found"),
    "empty": (["--train-text", "{f}"], "", "{f}: file is empty"),
    "not-utf8": (["--train-text", "{f}"], b"Caf\xe9 au lait\n", "{f}:1:4: not valid UTF-8 (byte 0xe9)"),
    "binary-zeros": (["--train-text", "{f}"], b"two words\n" + bytes(5000),
                     "{f}:2:1: NUL character: this is a binary file, not text"),
    "too-short": (["--train-text", "{f}"], "Hi there.\n", "{f}: text of 9 characters is too short"),
    "short-for-seq-len": (["--train-text", "{t}", "--seq-len", "500"], None,
                          "{t}: {n} training characters (after the validation slice) give no full training step "
                          "with batch size 8 and sequence length 500"),
    "dev-outside-alphabet": (["--train-text", "{t}", "--dev-text", "{f}"], "The Cat\nsat, Zzz.\n",
                             "{f}:2:6: character 'Z' (U+005A) is not in the alphabet of --train-text my text.txt"),
    "classify": (["--train-text", "{t}", "--task", "classify"], None, "--train-text trains the language model only"),
    "both": (["--train-text", "{t}", "--task", "both"], None, "--train-text trains the language model only"),
    "corpus": (["--train-text", "{t}", "--corpus", "text8", "{t}"], None, "--train-text and --corpus"),
    "download": (["--train-text", "{t}", "--download"], None, "--download builds the text8 data files"),
    "normalize": (["--train-text", "{t}", "--normalize"], None, "--normalize maps the text onto a-z and space: "
                                                               "add --vocab text8"),
    "dev-alone": (["--dev-text", "{t}"], None, "--dev-text FILE goes with --train-text FILE"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_own_text_is_one_line_exit_2(case, text_file, tmp_path, capsys):
    from mlx_rnn.run.cli import main

    flags, content, expected = BAD[case]
    bad = tmp_path / "bad.txt"
    if content is not None:
        _write(bad, content)
    text = text_file.read_text(encoding="utf-8").rstrip("\n")
    n = len(split_validation_blocks(own_text.split_dev_tail(text)[0], 0.05)[0])  # what is left to train on
    fill = dict(t=str(text_file), f=str(bad), n=n)
    argv = [*TINY, "--epochs", "1", "--save", str(tmp_path / "ck")] + [a.format(**fill) for a in flags]
    for fw in ("mlx", "torch"):
        assert main(fw, argv) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: " + expected.format(**fill)), err
    assert not (tmp_path / "ck").exists() and not list(tmp_path.glob(".text-cache-*"))  # nothing left behind


def test_trainer_script_with_train_text_needs_no_data(tmp_path):
    """As a user runs it: the script, a text beside it, no data directory, one line per epoch."""
    path = _write(tmp_path / "poem.txt", make_own_text(60, seed=1))
    proc = run_script("train_mlx", "--train-text", path.name, "--epochs", "1", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[lm] epoch   1/1" in proc.stdout and json.loads(proc.stdout[proc.stdout.index("{"):])["lm"]["sane"]
    # no --save: the checkpoint is kept in runs/<the text's stem>-<date>-<time>, and the run says so
    [ck] = (tmp_path / "runs").iterdir()
    assert ck.name.startswith("poem-") and (ck / "config.json").is_file()
    assert f"[lm] checkpoint saved in runs/{ck.name}" in proc.stderr
    bad = run_script("train_torch", "--train-text", "nowhere.txt", *TINY, cwd=tmp_path)
    assert bad.returncode == 2 and error_line(bad) == f"error: {tmp_path.resolve() / 'nowhere.txt'}: file not found"


def test_resume_keeps_the_text_and_plot_draws_the_run(text_file, tmp_path, capsys, one_torch_thread):
    from mlx_rnn.run.cli import main

    ck = tmp_path / "ck"
    assert main("mlx", ["--train-text", str(text_file), "--epochs", "1", "--save", str(ck), *TINY]) == 0
    other = _write(tmp_path / "other.txt", make_own_text(60, seed=5))
    assert main("mlx", ["--resume", str(ck), "--epochs", "2", "--train-text", str(other), *TINY]) == 2
    assert "differs from the resumed run's" in capsys.readouterr().err
    assert main("mlx", ["--resume", str(ck), "--epochs", "2", "--quiet"]) == 0  # the text from config.json
    assert [json.loads(ln)["epoch"] for ln in (ck / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    pytest.importorskip("matplotlib")
    from mlx_rnn.tools.plot import main as plot

    capsys.readouterr()
    assert plot(["--metrics", str(ck), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_checks_the_checkpoint_on_its_own_dev_text(trained, capsys, one_torch_thread):
    from mlx_rnn.tools.compare import main as compare

    ck, lm = trained["train_mlx"]
    assert compare(["--checkpoint", str(ck)]) == 0  # no data directory: the held-out tail
    out = capsys.readouterr().out
    assert "[lm] PASS" in out and f"over {lm['config']['dev_tail_chars']} dev positions" in out, out


# ----- any size of text: the trainers on the encoded text ------------------------------------------
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_devices_and_fifos_are_refused_at_once_by_both_trainers(kind, tmp_path, capsys):
    """``--train-text /dev/zero`` used to grow without end and a FIFO to hang: one line, exit 2."""
    import os
    import time

    from mlx_rnn.run.cli import main

    if kind == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
        cause = "is a named pipe (FIFO), not a regular file"
    else:
        path = "/dev/zero"
        cause = "is a character device, not a regular file"
    for argv in (["--train-text", str(path)], ["--train-text", str(_write(tmp_path / "t.txt", make_own_text(30))),
                                               "--dev-text", str(path)]):
        for fw in ("mlx", "torch"):
            t = time.perf_counter()
            assert main(fw, [*argv, *TINY, "--save", str(tmp_path / "ck")]) == 2
            assert time.perf_counter() - t < 5
            err = capsys.readouterr().err
            assert err == f"error: {path}: {cause}: save the text to a file and give that\n"
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_resume_mid_epoch_reuses_the_encoded_text_and_is_exact(framework, text_file, tmp_path, monkeypatch, capsys,
                                                               one_torch_thread):
    from mlx_rnn.core import textcache
    from mlx_rnn.run import cli, fit
    from tests.run.test_resume import StopAfter, max_diff

    flags = [*TINY, "--epochs", "2", "--dropout", "0.2", "--lr-schedule", "constant", "--train-text", str(text_file)]
    assert cli.main(framework, [*flags, "--save", str(tmp_path / "ref")]) == 0
    real = fit.train_task
    monkeypatch.setattr(cli, "train_task",
                        lambda fw, cfg, d, out, stop, **kw: real(fw, cfg, d, out, StopAfter(7), **kw))
    assert cli.main(framework, [*flags, "--save", str(tmp_path / "mid")]) == 130
    assert "interrupted at epoch 1, step 7" in capsys.readouterr().err
    ids = tmp_path / "mid" / "text-cache" / "train-text.ids"  # moved into the directory the run made
    stamp = (ids.stat().st_ino, ids.stat().st_mtime_ns)
    assert not list(tmp_path.glob(".text-cache-*"))
    monkeypatch.setattr(cli, "train_task", real)
    monkeypatch.setattr(textcache, "checked_pieces", lambda *a, **k: pytest.fail("the text was encoded again"))
    assert cli.main(framework, ["--resume", str(tmp_path / "mid"), "--quiet"]) == 0
    assert (ids.stat().st_ino, ids.stat().st_mtime_ns) == stamp
    assert "differ from those of the interrupted run" not in capsys.readouterr().out
    assert max_diff(tmp_path / "ref", tmp_path / "mid") <= 1e-6


def test_reading_a_large_text_prints_progress_unless_quiet(text_file, tmp_path, monkeypatch, capsys):
    from mlx_rnn.core import textread
    from mlx_rnn.run.cli import main

    real = textread.ReadProgress.__init__
    monkeypatch.setattr(textread.ReadProgress, "__init__",
                        lambda self, label, total, enabled=True, every_s=5.0: real(self, label, total, enabled, 0.0))
    monkeypatch.setattr(textread, "PIECE_BYTES", 1000)  # several pieces: a line after each
    quiet = [a for a in TINY if a != "--quiet"]
    assert main("mlx", ["--train-text", str(text_file), "--epochs", "1", *quiet, "--save", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert f"[lm] reading {text_file.name} (finding its alphabet): 0 of 0 MB" in err
    assert f"[lm] reading {text_file.name} (checking and encoding it): " in err
    assert f"[lm] {text_file.name}: {len(text_file.read_text(encoding='utf-8')) - 1:,} characters" in err
    assert main("mlx", ["--train-text", str(text_file), "--epochs", "1", *TINY, "--save", str(tmp_path / "b")]) == 0
    assert "[lm] reading" not in capsys.readouterr().err


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_a_large_validation_slice_is_scored_in_chunks_with_the_same_loss(trained, text_file, script, monkeypatch):
    from mlx_rnn.core.calibration import mean_nll
    from mlx_rnn.core.backend import load
    from mlx_rnn.run import evaluation

    text = text_file.read_text(encoding="utf-8")
    blocks = [text[i * 400:i * 400 + 300] for i in range(5)] + [text[3000:3170]]
    for fw in ("mlx", "torch"):
        wrapper = load(fw, trained[script][0], "lm")
        whole = mean_nll(*evaluation.validation_logits(wrapper, blocks), 1.0)
        assert evaluation.chunked_validation_loss(wrapper, blocks, chunk=37) == pytest.approx(whole, rel=1e-6)
        monkeypatch.setattr(evaluation, "VAL_ONE_PASS", 100)  # as if the slice were large
        assert evaluation.validation_loss("lm", wrapper, blocks) == pytest.approx(whole, rel=1e-6)
        assert [len(b) for b in evaluation.calibration_blocks(blocks)] == [100 // 6 + 1] * 6
        monkeypatch.undo()
