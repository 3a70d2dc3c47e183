""".ci/run: stops loudly (message, non-zero exit) when ../shared/data is missing, and otherwise
exports MLX_RNN_DATA as the absolute path of that folder before running the tests.

The script runs from a copy in a temporary "clone"; ``make`` and ``uname`` are stand-ins on PATH
(no tests, no BLAS installation)."""

import os
import shutil
import subprocess

from tests.conftest import ROOT


def _clone(tmp_path):
    repo = tmp_path / "clone"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("make", 'echo "make $* with MLX_RNN_DATA=$MLX_RNN_DATA"'), ("uname", "echo Darwin")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("MLX_RNN_DATA", None)
    return repo, env


def test_ci_run_fails_loudly_without_shared_data(tmp_path):
    repo, env = _clone(tmp_path)
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0
    assert "../shared/data not found" in proc.stderr, proc.stderr
    assert "make" not in proc.stdout  # the tests never ran


def test_ci_run_exports_the_data_folder(tmp_path):
    repo, env = _clone(tmp_path)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    proc = subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"make test with MLX_RNN_DATA={(tmp_path / 'shared' / 'data').resolve()}"
