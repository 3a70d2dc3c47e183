"""The checkpoint directory: an OS lock for the whole run, and no dead
ends after a crash: a killed save leaves a directory that either resumes exactly or can be reused
with --save; temporaries are removed; a full disk names the file and keeps the previous one."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import savedir
from tests.synthetic import ROOT, TINY, make_data_dir, run_script, script_env

RUN = ["--task", "classify", "--epochs", "2", "--dropout", "0.3", "--seed", "3", *TINY]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def _holder(path: Path) -> subprocess.Popen:
    code = ("import sys, time; from mlx_rnn.core.savedir import lock_dir; lock_dir(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_run_into_a_locked_save_directory_is_refused(tmp_path, data):
    save = tmp_path / "ck"
    holder = _holder(save)
    try:
        proc = run_script("train_mlx", "--data-dir", data, "--save", save, *RUN)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another run" in lines[0] and str(save) in lines[0]
        assert not (save / "config.json").exists()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, nothing stale is left
        holder.wait()
    savedir.lock_dir(save)  # free again
    savedir.unlock_all()


def test_lock_is_exclusive_between_processes_and_reentrant_within_one(tmp_path):
    d = tmp_path / "x"
    savedir.lock_dir(d)
    savedir.lock_dir(d)  # the same process: no error
    code = "import sys; from mlx_rnn.core.savedir import lock_dir; lock_dir(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(d)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "DirLocked" in proc.stderr
    savedir.unlock_all()


def test_recover_finishes_a_committed_staged_state_and_drops_an_uncommitted_one(tmp_path):
    d = tmp_path / "ck"
    (d / "resume" / ".staged").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    for name, text in (("model.safetensors", "old"), ("optimizer.safetensors", "old"), ("trainer_state.json", "old")):
        (d / "resume" / name).write_text(text)
    (d / "resume" / ".staged" / "optimizer.safetensors").write_text("new")
    (d / "resume" / ".staged" / "trainer_state.json").write_text("new")
    (d / ".model.safetensors.abc.tmp").write_text("partial")
    done = savedir.recover(d)
    assert (d / "resume" / "optimizer.safetensors").read_text() == "new"
    assert (d / "resume" / "trainer_state.json").read_text() == "new"
    assert (d / "resume" / "model.safetensors").read_text() == "old"  # moved before the kill
    assert not (d / "resume" / ".staged").exists() and not (d / ".model.safetensors.abc.tmp").exists()
    assert any("finished" in x for x in done) and any("temporary" in x for x in done)
    (d / "resume" / ".staged").mkdir()
    (d / "resume" / ".staged" / "model.safetensors").write_text("newer")  # not committed
    savedir.recover(d)
    assert (d / "resume" / "model.safetensors").read_text() == "old" and not (d / "resume" / ".staged").exists()


def test_recover_empties_a_directory_whose_first_save_never_finished(tmp_path):
    d = tmp_path / "ck"
    (d / "resume").mkdir(parents=True)
    (d / "model.safetensors").write_text("w")
    (d / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (d / "resume" / "trainer_state.json").write_text("{}")
    (d / "notes.txt").write_text("the user's")
    done = savedir.recover(d)
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt"] and "first save never finished" in done[-1]
    p = tmp_path / "pending"  # a two-task run's task not started yet: resumable, kept
    (p / "resume").mkdir(parents=True)
    (p / "resume" / "pending_config.json").write_text("{}")
    assert savedir.recover(p) == [] and (p / "resume" / "pending_config.json").exists()


def test_a_full_disk_names_the_file_keeps_the_previous_one_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    ckpt.atomic_write_bytes(target, b"previous")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", full)
    with pytest.raises(OSError) as e:
        ckpt.atomic_write_bytes(target, b"new" * 1000)
    assert e.value.filename == str(target) and e.value.errno == errno.ENOSPC
    from mlx_rnn.run.errors import one_line

    assert one_line(e.value) == f"{target}: No space left on device"
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    with pytest.raises(OSError) as e:
        ckpt.append_jsonl(tmp_path / "metrics.jsonl", {"epoch": 1})
    assert e.value.filename == str(tmp_path / "metrics.jsonl")


def test_resume_of_an_incomplete_directory_says_to_start_again(tmp_path, data):
    d = tmp_path / "ck"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"x")
    proc = run_script("train_mlx", "--data-dir", data, "--resume", d, "--task", "classify", "--quiet")
    assert proc.returncode == 2 and "nothing to resume: no checkpoint was committed there" in proc.stderr
    assert "its first save never finished" in proc.stderr and proc.stderr.rstrip().endswith(f"--save {d}")


def _kill_run(n: int, when: str, save: Path, data: Path) -> int:
    cmd = [sys.executable, str(ROOT / "tests" / "kill_at_save.py"), str(n), when, "mlx", "--data-dir", str(data),
           "--save", str(save), *RUN]
    return subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=120).returncode


def _final(save: Path) -> tuple[dict, list]:
    weights = ckpt.load_tensors(save / "model.safetensors")
    metrics = [json.loads(x) for x in (save / "metrics.jsonl").read_text().splitlines()]
    return weights, [{k: v for k, v in m.items() if not k.endswith("time_s") and k != "elapsed_s"} for m in metrics]


def test_sigkill_at_every_save_event_leaves_a_resumable_or_reusable_directory(tmp_path, data):
    """Kill the run at file events of both epochs (the first save included, before and after each
    rename): the directory then resumes to the uninterrupted result, or (no committed checkpoint)
    --resume says so and --save reuses it, ending with the same result. Never neither."""
    from mlx_rnn.run.cli import main

    ref = tmp_path / "ref"
    assert main("mlx", ["--data-dir", str(data), "--save", str(ref), *RUN]) == 0
    want_w, want_m = _final(ref)
    points = [(n, "before") for n in range(1, 19)] + [(n, "after") for n in range(1, 10)]
    outcomes = {}
    for n, when in points:
        save = tmp_path / f"k{n}{when}"
        rc = _kill_run(n, when, save, data)
        if rc == 0:  # the run has fewer events: it finished
            outcomes[(n, when)] = "finished"
            continue
        assert rc == -signal.SIGKILL, (n, when, rc)
        if main("mlx", ["--data-dir", str(data), "--resume", str(save), "--task", "classify", "--quiet"]) == 0:
            outcomes[(n, when)] = "resumed"
        else:
            assert not (save / "config.json").exists(), (n, when)
            assert main("mlx", ["--data-dir", str(data), "--save", str(save), *RUN]) == 0, (n, when)
            outcomes[(n, when)] = "reused"
        got_w, got_m = _final(save)
        assert got_m == want_m, (n, when)
        for k in want_w:
            np.testing.assert_allclose(got_w[k], want_w[k], rtol=0, atol=1e-6, err_msg=f"{k} at {n} {when}")
        leftovers = [p for p in save.rglob("*") if p.name.endswith(".tmp") or p.name == ".staged"]
        assert not leftovers, (n, when, leftovers)
    kinds = set(outcomes.values())
    assert {"resumed", "reused"} <= kinds, outcomes
