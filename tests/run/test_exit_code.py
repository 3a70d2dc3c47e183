"""One mapping from exceptions to exit codes and one-line messages for every script
(mlx_rnn/run/errors.py): each kind of exception gets its code and its line; an exception no
script handles propagates unchanged."""

from __future__ import annotations

import pytest

from mlx_rnn.core import distributed
from mlx_rnn.core.checkpoint import CheckpointError
from mlx_rnn.core.data import DataError, MissingData
from mlx_rnn.run import errors
from mlx_rnn.run.errors import (EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_DIVERGED, EXIT_INTERRUPTED, CheckFailed,
                                Diverged, Interrupted, exit_code, report_exit)


def _report(e: BaseException, capsys) -> tuple[int, list[str]]:
    code = report_exit(e)
    out, err = capsys.readouterr()
    assert out == ""
    return code, err.splitlines()


@pytest.mark.parametrize("exc, code, lines", [
    (ValueError("--epochs must be at least 1 (got 0)"), EXIT_BAD_INPUT, ["error: --epochs must be at least 1 (got 0)"]),
    (ValueError("two\nlines"), EXIT_BAD_INPUT, ["error: two lines"]),
    (ValueError(""), EXIT_BAD_INPUT, ["error: ValueError"]),
    (DataError("d/x.txt", "not UTF-8", 3), EXIT_BAD_INPUT, ["error: d/x.txt:3: not UTF-8"]),
    (CheckpointError("ck: no checkpoint"), EXIT_BAD_INPUT, ["error: ck: no checkpoint"]),
    (FileNotFoundError(2, "No such file or directory", "a/b.txt"), EXIT_BAD_INPUT,
     ["error: a/b.txt: No such file or directory"]),
    (CheckFailed("text8.zip: sha256 abc, expected def"), EXIT_CHECK_FAILED, ["error: text8.zip: sha256 abc, expected def"]),
    (Diverged("[lm] training diverged: non-finite loss at epoch 2"), EXIT_DIVERGED,
     ["error: [lm] training diverged: non-finite loss at epoch 2"]),
    (Interrupted("interrupted; resume with --resume ck"), EXIT_INTERRUPTED, ["interrupted; resume with --resume ck"]),
    (KeyboardInterrupt(), EXIT_INTERRUPTED, ["interrupted"]),
    (KeyboardInterrupt("SIGTERM"), EXIT_INTERRUPTED, ["interrupted by SIGTERM"]),
    (MemoryError(), EXIT_BAD_INPUT, ["error: out of memory: MemoryError (try a smaller model or batch)"]),
    (RuntimeError("[metal::malloc] Unable to allocate 8 GB. Details"), EXIT_BAD_INPUT,
     ["error: out of memory: [metal::malloc] Unable to allocate 8 GB (try a smaller model or batch)"]),
])
def test_each_kind_has_its_code_and_line(exc, code, lines, capsys):
    assert exit_code(exc) == code
    assert _report(exc, capsys) == (code, lines)


def test_a_missing_data_directory_adds_its_details(tmp_path, capsys):
    e = MissingData(tmp_path / "nowhere", ["text8-100k.txt"], "from --data-dir")
    code, lines = _report(e, capsys)
    assert code == EXIT_BAD_INPUT and lines[0] == f"error: {e}"
    assert len(lines) == 1 + len(e.details) >= 3 and all(line.startswith("  ") for line in lines[1:])


def test_an_exception_may_carry_its_own_code(capsys):
    from mlx_rnn.tools.bench.driver import WorkerError

    for kind, code in (("bad input", EXIT_BAD_INPUT), ("diverged", EXIT_DIVERGED), ("failure", EXIT_CHECK_FAILED)):
        e = WorkerError(f"[classify] mlx: broke ({kind})", kind)
        assert exit_code(e) == code
        assert _report(e, capsys) == (code, [f"error: [classify] mlx: broke ({kind})"])


@pytest.mark.parametrize("exc", [RuntimeError("a bug"), KeyError("k"), TypeError("t"), ZeroDivisionError()])
def test_unknown_exceptions_propagate_unchanged(exc, capsys):
    assert exit_code(exc) is None
    with pytest.raises(type(exc)) as info:
        report_exit(exc)
    assert info.value is exc and capsys.readouterr().err == ""


def test_a_script_lets_an_unknown_exception_through(monkeypatch, tmp_path, capsys):
    """The scripts' ``except (Exception, KeyboardInterrupt)`` hands a bug back as a traceback,
    and bad input as one line and exit 2."""
    from mlx_rnn.tools import sample

    def boom(path):
        raise KeyError("a bug")

    monkeypatch.setattr(sample.ckpt, "read_config", boom)
    with pytest.raises(KeyError, match="a bug"):
        sample.main(["--checkpoint", str(tmp_path)])
    monkeypatch.undo()
    assert sample.main(["--checkpoint", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'none'}"), err


def test_distributed_runtime_errors_and_interrupts(monkeypatch, capsys):
    """In a distributed run a RuntimeError (a peer died) is exit 1 naming the rank; only rank 0
    prints an interrupt's resume hint."""
    class Rank:
        enabled, rank, is_main = True, 1, False

    monkeypatch.setattr(distributed, "current", lambda: Rank())
    assert _report(RuntimeError("connection to a peer was lost"), capsys) == (
        EXIT_CHECK_FAILED, ["error: rank 1: connection to a peer was lost"])
    assert _report(Interrupted("interrupted; resume with --resume ck"), capsys) == (EXIT_INTERRUPTED, [])
    assert errors.exit_code(RuntimeError("x")) == EXIT_CHECK_FAILED


def test_a_closed_output_pipe_is_one_line_not_a_traceback(tmp_path):
    """``sample.py ... | head -c 10``: the reader goes away; one line on stderr, exit 2."""
    import subprocess
    import sys

    from tests.synthetic import SCRIPTS, fake_checkpoint, script_env

    ckpt_dir = fake_checkpoint(tmp_path / "lm", "lm")
    proc = subprocess.Popen([sys.executable, str(SCRIPTS["sample"]), "--checkpoint", str(ckpt_dir), "--length",
                             "80000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=script_env())
    proc.stdout.read(10)
    proc.stdout.close()  # as head does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == EXIT_BAD_INPUT
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.strip() == "error: standard output was closed before the output was written (broken pipe)"


@pytest.mark.parametrize("message", [
    "filesystem error: cannot create directories: No such file or directory [/proc/mlx/0.32.4/cpu]",
    "filesystem error: temp_directory_path: Not a directory [/tmp/afile]",
])
def test_an_unusable_tmpdir_for_mlx_kernels_is_bad_input(message, monkeypatch, capsys):
    monkeypatch.setenv("TMPDIR", "/proc")
    code, lines = _report(RuntimeError(message), capsys)
    assert code == EXIT_BAD_INPUT
    assert lines == [f"error: MLX cannot keep its compiled kernels under $TMPDIR (TMPDIR=/proc): {message}; "
                     "set TMPDIR to a writable directory"]
    assert exit_code(RuntimeError("filesystem error: something else entirely")) is None


def test_a_python_level_op_run_with_an_unusable_tmpdir_says_so(tmp_path):
    """The Python-level op (mx.compile'd loops) builds kernels on the CPU: with $TMPDIR in /proc
    that is one line and exit 2, not a traceback."""
    pytest.importorskip("mlx.core")
    from synthetic import TINY, error_line, make_data_dir, run_script

    data = make_data_dir(tmp_path / "data")
    proc = run_script("train_mlx", "--task", "lm", "--epochs", "1", "--no-save", "--data-dir", data, *TINY,
                      cwd=tmp_path, env={"TMPDIR": "/proc", "MLX_RNN_LSTM_IMPL": "op"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert error_line(proc).startswith("error: MLX cannot keep its compiled kernels under $TMPDIR (TMPDIR=/proc)")
    assert "Traceback" not in proc.stderr
