"""Stopped cleanly: SIGTERM is handled like Ctrl-C (resumable state, a message naming the signal
and the --resume command, exit 130) and the resumed run continues exactly; ``--resume DIR``
names the real cause when there is nothing to resume, whatever ``--task`` says.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlx_rnn.run import cli
from mlx_rnn.run.stop import StopFlag, deferred_signals, terminate_as_interrupt
from tests.synthetic import SCRIPTS, TINY, TRAINERS, fake_checkpoint, make_data_dir, run_script, script_env
from tests.run.test_resume import TOL, max_diff


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


# ----- the signal handlers ------------------------------------------------------------------
def test_stop_flag_takes_sigterm_like_ctrl_c_and_a_second_signal_aborts(capsys):
    with StopFlag() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.cause == "SIGTERM"
        assert "SIGTERM: finishing this step and saving resumable state" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.cause == "Ctrl-C"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back


def test_sigterm_outside_training_interrupts_like_ctrl_c():
    old = terminate_as_interrupt()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # (the handler runs at the next bytecode)
    finally:
        terminate_as_interrupt(old)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_signals_during_an_import_wait_and_reach_the_handler_in_place_after():
    old = terminate_as_interrupt()
    try:
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # (a handler would run here: the held one only records)
                reached = True  # nothing was raised inside
            time.sleep(1)
        assert reached
        with StopFlag() as stop:
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                assert not stop()
            time.sleep(0.2)
            assert stop() and stop.cause == "Ctrl-C"  # delivered to StopFlag once the import is over
    finally:
        terminate_as_interrupt(old)


def test_a_save_directory_the_run_created_is_removed_when_it_saved_nothing(data, tmp_path, capsys, monkeypatch):
    def signal_before_training(*args, **kwargs):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(cli, "_train_plan", signal_before_training)
    target = tmp_path / "runs" / "new"
    argv = ["--task", "classify", "--data-dir", str(data), "--epochs", "1", *TINY]
    assert cli.main("mlx", [*argv, "--save", str(target)]) == 130
    assert "interrupted by SIGTERM" in capsys.readouterr().err
    assert not target.exists() and (tmp_path / "runs").is_dir()  # its parent stays
    kept = tmp_path / "mine"
    kept.mkdir()
    assert cli.main("mlx", [*argv, "--save", str(kept)]) == 130
    assert kept.is_dir()  # the user's own empty directory stays


# ----- SIGTERM on the real scripts ----------------------------------------------------------
def _sigterm_mid_epoch(cmd: list, cwd: Path, epoch: int, timeout: float = 300) -> tuple[int, str, str]:
    """Start ``cmd`` (with ``--log-every 1``: a progress line per step on stderr, a pipe), send
    SIGTERM at the second progress line of ``epoch``; (exit code, stdout, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env())
    err = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stderr:
            err.append(line)
            if f"] epoch {epoch}/" in line and " step 2/" in line:
                proc.send_signal(signal.SIGTERM)
                break
            assert time.monotonic() < deadline, "no progress line in time"
        out, rest = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, "".join(err) + rest


@pytest.mark.parametrize("script", TRAINERS)
def test_sigterm_mid_epoch_saves_state_exits_130_and_resume_matches(script, data, tmp_path):
    """SIGTERM in the LM's second epoch, in a run without --save: the state goes to the default
    directory, the last line names the signal and the --resume command, exit 130; --resume
    continues to the same weights and the same epoch train losses as an uninterrupted run."""
    flags = ["--task", "lm", "--data-dir", str(data), "--epochs", "2", "--dropout", "0.3", "--seed", "3",
             "--hidden-size", "16", "--embed-dim", "8", "--batch-size", "8", "--seq-len", "10", "--device", "cpu"]
    ref = run_script(script, *flags, "--quiet", "--save", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    rc, out, err = _sigterm_mid_epoch([sys.executable, str(SCRIPTS[script]), *flags, "--log-every", "1"],
                                      tmp_path, epoch=2)
    assert rc == 130, out + err
    assert "Traceback" not in err
    [ck] = (tmp_path / "runs").iterdir()
    state = json.loads((ck / "resume" / "trainer_state.json").read_text())
    assert state["epoch"] == 1 and 2 <= state["step"] == state["epoch_loss_steps"] < 28  # (the signal's step)
    last = err.strip().splitlines()[-1]
    assert last == (f"[lm] interrupted by SIGTERM at epoch 2, step {state['step']}; resume with "
                    f"--resume runs/{ck.name}"), err

    res = run_script(script, "--resume", f"runs/{ck.name}", "--data-dir", data, "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert max_diff(tmp_path / "ref", ck) <= TOL
    lines = [[json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (tmp_path / "ref", ck)]
    assert [x["epoch"] for x in lines[1]] == [1, 2]
    for a, b in zip(*lines):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6, abs=0)


# ----- --resume on a directory with nothing to resume ------------------------------------------
TASK_FLAGS = {"none": [], "both": ["--task", "both"], "lm": ["--task", "lm"]}


def _resume(args, data, capsys, flags=TINY) -> str:
    assert cli.main("mlx", ["--data-dir", str(data), *flags, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("task", list(TASK_FLAGS))
def test_resume_of_a_first_save_that_never_finished_names_it(task, data, tmp_path, capsys):
    """A single-task directory (created and locked by a run killed before its first save):
    the message says no checkpoint was committed there, with or without --task."""
    d = tmp_path / "ck"
    d.mkdir()
    line = _resume(["--resume", str(d), *TASK_FLAGS[task]], data, capsys)
    assert line == (f"error: {d}: nothing to resume: no checkpoint was committed there (no config.json, here or in "
                    "classify/ or lm/): its first save never finished, or it is not a checkpoint directory; start "
                    f"the run again with --save {d}")


@pytest.mark.parametrize("task", list(TASK_FLAGS))
def test_resume_of_a_directory_another_run_holds_before_its_first_save_says_so(task, data, tmp_path, capsys):
    d = tmp_path / "ck"
    d.mkdir()
    fd = os.open(d, os.O_RDONLY)  # "another run": a lock on its own open file description
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        line = _resume(["--resume", str(d), *TASK_FLAGS[task]], data, capsys)
    finally:
        os.close(fd)
    assert line.startswith(f"error: --resume {d}: {d} is in use by another run, which has not saved a "
                           "checkpoint yet"), line
    assert "wait for it to finish" in line


def test_resume_of_a_two_task_root_names_the_root_and_a_locked_task(data, tmp_path, capsys):
    root = tmp_path / "two"
    (root / "classify").mkdir(parents=True)
    (root / "lm").mkdir()
    for args in ([], ["--task", "both"], ["--task", "lm"]):
        line = _resume(["--resume", str(root), *args], data, capsys)
        assert line.startswith(f"error: {root}: nothing to resume: no checkpoint was committed there"), line
        assert line.endswith(f"start the run again with --save {root}"), line
    fd = os.open(root / "lm", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        line = _resume(["--resume", str(root)], data, capsys)
    finally:
        os.close(fd)
    assert line.startswith(f"error: --resume {root}: {root / 'lm'} is in use by another run"), line
    # the classifier finished, the LM's first save never did: name the LM's directory
    fake_checkpoint(root / "classify", "classify")
    line = _resume(["--resume", str(root), "--quiet"], data, capsys, flags=[])
    assert line == (f"error: {root / 'lm'}: nothing to resume there: no checkpoint was committed (no config.json): "
                    f"its first save never finished; train lm again with --save {root / 'lm'}")
    # a single-task checkpoint resumed as a two-task run
    fake_checkpoint(tmp_path / "one", "lm")
    line = _resume(["--resume", str(tmp_path / "one"), "--task", "both"], data, capsys)
    assert line == (f"error: --resume {tmp_path / 'one'}: holds one 'lm' checkpoint, not a two-task run's "
                    "classify/ and lm/; resume it without --task both")
