"""The distributed benchmark never crashes: the 2-rank PyTorch worker starts
and tears down 20 times in a row without an abort ("terminate called without an active
exception", SIGABRT at exit), and a failed scaling run is one line, not a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest

from mlx_rnn.tools.bench import scaling as bench_scaling
from mlx_rnn.tools.bench.scaling import RESULT_TAG, launch_cmd, failure_line
from tests.conftest import ROOT

pytest.importorskip("torch")

TINY_WORKER = ["torch", "--hidden-size", "8", "--embed-dim", "8", "--batch-size", "2", "--seq-len", "5",
               "--steps", "2"]


@pytest.mark.slow
def test_two_rank_torch_worker_starts_and_tears_down_20_times_without_an_abort():
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for i in range(20):
        proc = subprocess.run(launch_cmd("torch", 2, TINY_WORKER), cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=180)
        assert "terminate called" not in proc.stderr, f"run {i + 1}: {failure_line(proc.stderr)}"
        assert proc.returncode == 0, f"run {i + 1}: exit {proc.returncode}: {failure_line(proc.stderr)}"
        assert sum(ln.startswith(RESULT_TAG) for ln in proc.stdout.splitlines()) == 1


def test_failure_line_picks_the_cause_not_the_launcher_traceback():
    stderr = ("SCALING noise\nterminate called without an active exception\n"
              "Traceback (most recent call last):\n  File \"run.py\", line 1, in <module>\n"
              "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n  exitcode  : -6 (pid: 1)\n")
    assert failure_line(stderr) == "terminate called without an active exception"
    assert failure_line("") == "no output"
    assert failure_line("a\nerror: rank 1: peer lost\nb") == "error: rank 1: peer lost"


def test_a_failed_scaling_run_is_one_line(monkeypatch, capsys):
    from mlx_rnn.tools.bench import benchmark

    def fail(*a, **k):
        raise RuntimeError("torch scaling run with 2 ranks failed (exit 1): terminate called without an "
                           "active exception")

    monkeypatch.setattr(bench_scaling, "measure_scaling", fail)
    rc = benchmark.main(["--distributed", "--scoring-only", "--frameworks", "torch", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == benchmark.EXIT_FAILED and len(err) == 1 and err[0].startswith("error: torch scaling run")
