"""Progress in logs: off a terminal (or on one of width 0) a plain line every --log-every steps or
seconds (steps, running mean train loss, chars/s, the epoch's ETA), in both trainers; a tqdm bar
on a terminal; nothing with --quiet. The loss is read back only at those lines.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import pty
import re
import struct
import termios
from pathlib import Path

import pytest

from mlx_rnn.core import batching
from mlx_rnn.run.flags import log_interval
from mlx_rnn.run import fit
from mlx_rnn.run.progress import Progress, format_duration, is_terminal
from tests.synthetic import TINY, TRAINERS, make_data_dir, run_script
from tests.run.test_resume import _setup

LINE = re.compile(r"^\[(classify|lm)\] epoch (\d+)/(\d+)  step (\d+)/(\d+) \((\d+) %\)  train loss (\d+\.\d{4})  "
                  r"([\d,]+) chars/s  ETA (\S+)$")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_log_every_takes_steps_seconds_or_zero():
    assert log_interval("200") == ("steps", 200)
    assert log_interval("30s") == ("s", 30.0) and log_interval("0.5S") == ("s", 0.5)
    assert log_interval("0") == ("steps", 0) == log_interval("0s")
    for bad in ("-1", "abc", "10m", "nans", "-2s", "infs", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            log_interval(bad)


def test_format_duration():
    assert [format_duration(s) for s in (0, 44.6, 192, 3599, 7500)] == ["0s", "45s", "3m12s", "59m59s", "2h05m"]
    assert format_duration(float("inf")) == format_duration(float("nan")) == "?"


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_every_t_seconds_with_rate_and_eta():
    """A fake clock: 0.5 s per step, a line at least every 2 s, 1,000 characters per step."""
    clock, out = Clock(), io.StringIO()
    p = Progress("lm", 2, 5, total=20, done=4, every=("s", 2.0), chars_per_step=1000, stream=out, clock=clock)
    assert p.bar is None and p.lines  # a StringIO is no terminal
    due = []
    for k in range(10):
        clock.t += 0.5
        p.update()
        if p.due():
            due.append(p.done)
            p.report(loss_sum=3.0 * (4 + k + 1), loss_steps=4 + k + 1)
    assert due == [8, 12]
    lines = out.getvalue().splitlines()
    assert lines[0] == "[lm] epoch 2/5  step 8/20 (40 %)  train loss 3.0000  2,000 chars/s  ETA 6s"
    assert lines[1] == "[lm] epoch 2/5  step 12/20 (60 %)  train loss 3.0000  2,000 chars/s  ETA 4s"
    assert all(LINE.match(x) for x in lines)


def test_lines_every_n_steps_none_when_quiet_or_zero():
    out = io.StringIO()
    p = Progress("classify", 1, 1, total=10, every=("steps", 3), stream=out, clock=Clock())
    hits = []
    for _ in range(10):
        p.update()
        if p.due():
            hits.append(p.done)
            p.report(1.0, p.done)
    assert hits == [3, 6, 9]
    for kw in (dict(quiet=True), dict(every=("steps", 0))):
        q = Progress("classify", 1, 1, total=10, stream=out, **kw)
        q.update()
        assert not q.due()


def _pty(columns: int):
    """A pseudo-terminal (master fd, slave file) of ``columns`` columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return master, os.fdopen(slave, "w")


def test_a_terminal_gets_a_bar_and_one_of_width_0_gets_lines():
    master, term = _pty(80)
    try:
        assert is_terminal(term)
        p = Progress("lm", 1, 1, total=5, stream=term)
        assert p.bar is not None and not p.lines and not p.due()
        p.close()
    finally:
        term.close()
        os.close(master)
    master, term = _pty(0)  # tqdm draws nothing at width 0
    try:
        assert not is_terminal(term)
        assert Progress("lm", 1, 1, total=5, stream=term).lines
    finally:
        term.close()
        os.close(master)
    assert not is_terminal(io.StringIO())


@pytest.mark.parametrize("task", ["classify", "lm"])
@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_lines_in_both_trainers_read_the_loss_only_when_due(framework, task, data, tmp_path, capsys, monkeypatch):
    """Every 2 steps: one line per 2 steps, whose running mean at the epoch's last step is the
    epoch's train loss in metrics.jsonl; reports happen only where a line is due."""
    _, fw, cfg, d = _setup(framework, task, data, epochs=1)
    spe = batching.steps_per_epoch(cfg, d["train"])
    reports = []
    real = Progress.report

    def report(self, loss_sum, loss_steps):
        reports.append(self.done)
        return real(self, loss_sum, loss_steps)

    monkeypatch.setattr(Progress, "report", report)
    out = fit.Outputs(tmp_path / "ck", log=lambda *a: None, log_every=("steps", 2))
    fit.train_task(fw, cfg, d, out, lambda: False)
    lines = [m for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]
    assert reports == list(range(2, spe + 1, 2))
    assert [int(m.group(4)) for m in lines] == reports and all(int(m.group(5)) == spe for m in lines)
    [rec] = [json.loads(x) for x in (tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()]
    if spe % 2 == 0:
        assert float(lines[-1].group(7)) == pytest.approx(rec["train_loss"], abs=5e-5)


@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_log_has_progress_lines_unless_quiet(script, data, tmp_path):
    """The scripts with stderr a pipe: progress lines with --log-every; none with --quiet."""
    flags = ["--task", "lm", "--data-dir", data, "--epochs", "1", *[f for f in TINY if f != "--quiet"], "--no-save"]
    proc = run_script(script, *flags, "--log-every", "5")
    assert proc.returncode == 0, proc.stderr
    lines = [m for m in map(LINE.match, proc.stderr.splitlines()) if m]
    assert [int(m.group(4)) for m in lines] == [5, 10, 15, 20, 25] and "\r" not in proc.stderr
    quiet = run_script(script, *flags, "--log-every", "5", "--quiet")
    assert quiet.returncode == 0 and not any(map(LINE.match, quiet.stderr.splitlines())), quiet.stderr
    bad = run_script(script, *flags, "--log-every", "5m")
    assert bad.returncode == 2 and "--log-every" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
