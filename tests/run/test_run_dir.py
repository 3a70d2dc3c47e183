"""Checkpoints by default: a trainer run without --save keeps its checkpoint(s) in a fresh
runs/NAME-YYYYmmdd-HHMMSS directory of the current directory and its last lines name it and
the commands that use it (which work as printed); --no-save writes nothing; --resume writes
into the resumed directory; nothing trained, nothing kept.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_rnn.core.savedir import claim_run_dir, remove_if_empty, run_dir_name
from mlx_rnn.run import cli
from mlx_rnn.run.next_steps import command
from mlx_rnn.tools import compare, evaluate, sample
from tests.conftest import ROOT
from tests.synthetic import TINY, make_data_dir, run_script

STAMP = r"\d{8}-\d{6}"
TOOLS = {"sample.py": sample.main, "evaluate.py": evaluate.main, "compare.py": compare.main}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def _train(framework, argv, capsys) -> tuple[dict, list[str]]:
    """Run the trainer in-process; (result JSON, stderr lines)."""
    rc = cli.main(framework, argv)
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    return json.loads(cap.out[cap.out.index("\n{") + 1:]), cap.err.strip().splitlines()


def _next_commands(err: list[str]) -> list[list[str]]:
    """The commands of the run's last lines (after "next:"), as argument lists."""
    i = err.index("next:")
    return [shlex.split(line.split("  #")[0]) for line in err[i + 1:]]


def test_names_and_unique_directories(tmp_path):
    assert run_dir_name(["lm"]) == "lm" and run_dir_name(["classify", "lm"]) == "both"
    assert run_dir_name(["lm"], "/x/My Notes (v2).txt") == "My-Notes-v2"
    assert run_dir_name(["lm"], "/x/(( )).txt") == "lm"
    first = claim_run_dir(tmp_path / "runs" / "lm-20250101-120000")
    second = claim_run_dir(tmp_path / "runs" / "lm-20250101-120000")  # the same second
    assert (first.name, second.name) == ("lm-20250101-120000", "lm-20250101-120000-2")
    assert first.is_dir() and second.is_dir()
    (second / "sub").mkdir()
    assert remove_if_empty(second) and not second.exists()
    (first / "config.json").write_text("{}")
    assert not remove_if_empty(first) and first.is_dir()
    (first / "config.json").unlink()
    (first / "text-cache").mkdir()
    (first / "text-cache" / "train-text.ids").write_bytes(b"\0")  # an encoded own text alone is no checkpoint
    assert remove_if_empty(first) and not (tmp_path / "runs").exists()  # the emptied runs/ goes too


def test_lm_without_save_keeps_its_checkpoint_and_says_what_to_run(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result, err = _train("mlx", ["--task", "lm", "--data-dir", str(data), "--epochs", "1", *TINY], capsys)
    [ck] = (tmp_path / "runs").iterdir()
    assert re.fullmatch(rf"lm-{STAMP}", ck.name) and (ck / "config.json").is_file()
    assert (ck / "resume" / "trainer_state.json").is_file() and (ck / "metrics.jsonl").is_file()
    assert result["lm"]["checkpoint"] == f"runs/{ck.name}"
    assert err[-5] == f"[lm] checkpoint saved in runs/{ck.name}" and err[-4] == "next:"
    cmds = _next_commands(err)
    assert [Path(c[1]).name for c in cmds] == ["sample.py", "evaluate.py", "compare.py"]
    assert all(c[1] == os.path.relpath(ROOT / "scripts" / Path(c[1]).name) or Path(c[1]).is_absolute() for c in cmds)
    for c in cmds:  # each command works as printed
        assert c[c.index("--checkpoint") + 1] == f"runs/{ck.name}"
        assert TOOLS[Path(c[1]).name](c[2:]) == 0, c
    capsys.readouterr()

    # --resume writes into the resumed directory: no second one, and says so again
    result, err = _train("mlx", ["--resume", f"runs/{ck.name}", "--epochs", "2", "--data-dir", str(data), "--quiet"],
                         capsys)
    assert list((tmp_path / "runs").iterdir()) == [ck] and result["lm"]["epochs"] == 2
    assert result["lm"]["checkpoint"] == f"runs/{ck.name}" and f"[lm] checkpoint saved in runs/{ck.name}" in err


def test_both_tasks_in_torch_go_to_one_directory(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result, err = _train("torch", ["--data-dir", str(data), "--epochs", "1", *TINY], capsys)
    [root] = (tmp_path / "runs").iterdir()
    assert re.fullmatch(rf"both-{STAMP}", root.name)
    for task in ("classify", "lm"):
        assert (root / task / "config.json").is_file() and result[task]["checkpoint"] == f"runs/{root.name}/{task}"
    cmds = _next_commands(err)
    assert all("--framework" in c and c[c.index("--framework") + 1] == "torch"
               for c in cmds if Path(c[1]).name != "compare.py")
    [cmp] = [c for c in cmds if Path(c[1]).name == "compare.py"]  # one comparison of both tasks
    assert cmp[cmp.index("--checkpoint") + 1] == f"runs/{root.name}" and "--data-dir" in cmp
    assert compare.main(cmp[2:]) == 0


def test_no_save_writes_nothing(data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    result, err = _train("mlx", ["--task", "classify", "--data-dir", str(data), "--epochs", "1", *TINY, "--no-save"],
                         capsys)
    assert list(tmp_path.iterdir()) == [] and "checkpoint" not in result["classify"] and "next:" not in err
    with pytest.raises(SystemExit, match="2"):  # (a usage error: argparse)
        cli.main("mlx", ["--task", "classify", "--data-dir", str(data), *TINY, "--no-save", "--save", "x"])
    line, = capsys.readouterr().err.strip().splitlines()
    assert "argument --save: not allowed with argument --no-save" in line, line
    assert cli.main("mlx", ["--task", "classify", "--data-dir", str(data), *TINY, "--no-save", "--resume", "x"]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --no-save cannot be combined with --resume"), line
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_saves_nothing_leaves_no_directory(data, tmp_path, monkeypatch, capsys):
    """A run that diverges in its first epoch leaves no empty runs/lm-... behind; a place where
    the default directory cannot go is refused before any training."""
    monkeypatch.chdir(tmp_path)
    assert cli.main("mlx", ["--task", "lm", "--data-dir", str(data), "--epochs", "2", *TINY, "--lr", "1e30",
                            "--weight-decay", "1", "--clip-norm", "0"]) == 3
    assert "training diverged" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # the run dir and the emptied runs/ are gone
    (tmp_path / "runs").write_text("a file")
    assert cli.main("mlx", ["--task", "lm", "--data-dir", str(data), "--epochs", "1", *TINY]) == 2
    line, = capsys.readouterr().err.strip().splitlines()
    assert re.fullmatch(rf"error: default checkpoint directory runs/lm-{STAMP}: {re.escape(str(tmp_path))}/runs exists "
                        r"and is not a directory \(choose one with --save DIR, or --no-save\)", line), line


def test_next_commands_fall_back_to_the_console_commands(monkeypatch, tmp_path):
    from mlx_rnn.run import next_steps

    monkeypatch.setattr(next_steps, "SCRIPTS", tmp_path / "no-scripts")
    assert command("sample") == "mlx-rnn-sample" and command("compare") is None


def test_distributed_run_rank_0_alone_writes_the_default_directory(data, tmp_path):
    """Two MLX ranks (ring, loopback) without --save: one directory, written by rank 0."""
    pytest.importorskip("mlx.core")
    from mlx_rnn.tools.bench.scaling import free_ports

    cmd = [sys.executable, "-m", "mlx_rnn.tools.launch", "-n", "2", "--backend", "ring", "--starting-port",
           str(free_ports(2)), "--", sys.executable, str(ROOT / "scripts" / "train_mlx.py"), "--distributed",
           "--task", "lm", "--data-dir", str(data), "--epochs", "1", *TINY]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [ck] = (tmp_path / "runs").iterdir()
    assert re.fullmatch(rf"lm-{STAMP}", ck.name) and (ck / "config.json").is_file()
    assert proc.stderr.count("checkpoint saved in") == 1
