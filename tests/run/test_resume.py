"""Checkpoints never lose work: Ctrl-C saves resumable state and exits 130, and a run that
is interrupted (mid-epoch or between epochs) and resumed ends with exactly the parameters of
an uninterrupted run, in both frameworks and both tasks, with dropout so that the random
generator's state matters.
"""

from __future__ import annotations

import dataclasses

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core import backend, batching, taskdata
from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.config import make_config
from mlx_rnn.core.vocab import Indexer
from mlx_rnn.run import cli, errors, fit
from mlx_rnn.run.resume import load_resume_state
from tests.synthetic import SCRIPTS, TINY, TRAINERS, make_data_dir, run_script, script_env

TOL = 1e-6
FILES = ("model.safetensors", "resume/model.safetensors", "resume/optimizer.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models on shared cores: one intra-op thread is faster (and restored afterwards)."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def max_diff(a: Path, b: Path, files=FILES) -> float:
    """Largest |difference| over every tensor of ``files`` in checkpoint dirs ``a`` and ``b``."""
    worst = 0.0
    for name in files:
        ta, tb = ckpt.load_tensors(a / name), ckpt.load_tensors(b / name)
        assert set(ta) == set(tb), name
        for k in ta:
            assert ta[k].shape == tb[k].shape, (name, k)
            if ta[k].size:
                worst = max(worst, float(np.max(np.abs(ta[k].astype(np.float64) - tb[k].astype(np.float64)))))
    return worst


# ----- exact resume, in process (deterministic interruption points) ----------------------------
def _setup(framework: str, task: str, data_dir: Path, epochs: int = 2):
    fw = backend.train_module(framework)
    fw.select_device("cpu")
    # constant learning rate: the "between" case extends a 1-epoch run to 2, and a cosine schedule
    # depends on the total number of epochs
    cfg = make_config(task, epochs=epochs, hidden_size=16, embed_dim=8, dropout=0.3, batch_size=8,
                      seq_len=20 if task == "classify" else 10, seed=7, lr_schedule="constant", device="cpu")
    d = taskdata.load_task_data(task, data_dir, Indexer(cfg.vocab), cfg.val_fraction, cfg.seed)
    return fit, fw, cfg, d


def _quiet(*a, **k):
    pass


def _train(fw, cfg, d, save_dir, resume_dir, stop):
    """fit.train_task with quiet outputs at ``save_dir``, resuming from ``resume_dir`` when given."""
    resume = None
    if resume_dir is not None:
        resume = load_resume_state(resume_dir, cfg.task, cfg, d["train"], fw.FRAMEWORK)
    return fit.train_task(fw, cfg, d, fit.Outputs(save_dir, quiet=True, log=_quiet), stop, resume=resume)


class StopAfter:
    """A stop flag that turns true at the ``n``-th poll (one poll per training step)."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


@pytest.mark.parametrize("task", ["classify", "lm"])
@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_resume_is_exact(framework, task, data, tmp_path):
    _, fw, cfg, d = _setup(framework, task, data)
    spe = batching.steps_per_epoch(cfg, d["train"])
    assert spe >= 4

    # uninterrupted
    _train(fw, cfg, d, tmp_path / "ref", None, lambda: False)

    # interrupted mid-epoch (epoch 2, halfway), then resumed
    with pytest.raises(errors.Interrupted, match=rf"interrupted at epoch 2, step {spe // 2}; resume with"):
        _train(fw, cfg, d, tmp_path / "mid", None, StopAfter(spe + spe // 2))
    state = json.loads((tmp_path / "mid" / "resume" / "trainer_state.json").read_text())
    assert (state["epoch"], state["step"], state["global_step"]) == (1, spe // 2, spe + spe // 2)
    _train(fw, cfg, d, tmp_path / "mid", tmp_path / "mid", lambda: False)
    assert max_diff(tmp_path / "ref", tmp_path / "mid") <= TOL

    # stopped between epochs (a run of 1 epoch, then resumed for both), interrupted again
    # in the very first step of the resumed part, and resumed once more
    _train(fw, cfg.replace(epochs=1), d, tmp_path / "between", None, lambda: False)
    with pytest.raises(errors.Interrupted, match="interrupted at epoch 2, step 1;"):
        _train(fw, cfg, d, tmp_path / "between", tmp_path / "between", StopAfter(1))
    _train(fw, cfg, d, tmp_path / "between", tmp_path / "between", lambda: False)
    assert max_diff(tmp_path / "ref", tmp_path / "between") <= TOL

    # metrics.jsonl: one line per epoch, whatever the interruptions, and each epoch's train loss
    # over all its steps: the interrupted epoch's first steps are counted in (saved with the state)
    ref = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    for run in ("ref", "mid", "between"):
        lines = [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert [x["epoch"] for x in lines] == [1, 2], run
        assert [x["steps"] for x in lines] == [spe, spe], run
        for a, b in zip(lines, ref):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6, abs=0), (run, a["epoch"])


def _drop_state_keys(ck: Path, *keys) -> None:
    """Rewrite ``ck/resume`` as a trainer that predates ``keys`` would have written it."""
    rdir = ck / "resume"
    state = json.loads((rdir / "trainer_state.json").read_text())
    for key in ("files", *keys):
        state.pop(key)
    ckpt.save_resume(ck, ckpt.load_tensors(rdir / "model.safetensors"),
                     ckpt.load_tensors(rdir / "optimizer.safetensors"), state)


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_resumed_epoch_from_an_older_state_says_its_train_loss_is_partial(framework, data, tmp_path):
    """A state written before the partial epoch's loss was kept still resumes exactly; that
    epoch's train loss covers only the steps after the resume, which the log and the metrics'
    step count say; the state holds the sum and count, and a bad value of either is refused."""
    _, fw, cfg, d = _setup(framework, "lm", data, epochs=1)
    spe = batching.steps_per_epoch(cfg, d["train"])
    with pytest.raises(errors.Interrupted):
        _train(fw, cfg, d, tmp_path / "ck", None, StopAfter(3))
    state = json.loads((tmp_path / "ck" / "resume" / "trainer_state.json").read_text())
    assert state["epoch_loss_steps"] == state["step"] == 3 and state["epoch_loss_sum"] > 0
    for key, bad in (("epoch_loss_sum", float("nan")), ("epoch_loss_steps", 4), ("epoch_loss_steps", -1)):
        odd = tmp_path / f"odd-{key}-{bad}"
        shutil.copytree(tmp_path / "ck", odd)
        _drop_state_keys(odd)
        st = json.loads((odd / "resume" / "trainer_state.json").read_text())
        st[key] = bad
        (odd / "resume" / "trainer_state.json").write_text(json.dumps(st))
        with pytest.raises(ckpt.CheckpointError, match=key):
            ckpt.load_resume(odd)
    _drop_state_keys(tmp_path / "ck", "epoch_loss_sum", "epoch_loss_steps")
    logged = []
    resume = load_resume_state(tmp_path / "ck", "lm", cfg, d["train"], fw.FRAMEWORK)
    fit.train_task(fw, cfg, d, fit.Outputs(tmp_path / "ck", quiet=True, log=logged.append), lambda: False,
                   resume=resume)
    assert any("covers the rest" in line for line in logged), logged
    [line] = [json.loads(x) for x in (tmp_path / "ck" / "metrics.jsonl").read_text().splitlines()]
    assert line["steps"] == spe - 3
    _train(fw, cfg, d, tmp_path / "ref", None, lambda: False)
    assert max_diff(tmp_path / "ref", tmp_path / "ck") <= TOL


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_resuming_a_finished_run_says_nothing_is_left(framework, data, tmp_path):
    _, fw, cfg, d = _setup(framework, "lm", data, epochs=1)
    _train(fw, cfg, d, tmp_path / "ck", None, lambda: False)
    logged = []
    resume = load_resume_state(tmp_path / "ck", "lm", cfg, d["train"], fw.FRAMEWORK)
    bundle = fit.train_task(fw, cfg, d, fit.Outputs(tmp_path / "ck", quiet=True, log=logged.append),
                            lambda: False, resume=resume)
    assert any("already trained for all 1 epochs: nothing left to train" in line for line in logged), logged
    assert bundle["epochs"] == 1


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_resuming_with_fewer_epochs_than_trained_is_refused(framework, data, tmp_path):
    """--epochs below the epochs already trained: one line naming both, before anything is written
    (it used to claim "all 2 epochs" trained and rewrite config.json's epochs)."""
    _, fw, cfg, d = _setup(framework, "lm", data, epochs=3)
    _train(fw, cfg, d, tmp_path / "ck", None, lambda: False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir() if p.is_file()}
    fewer = dataclasses.replace(cfg, epochs=2)
    with pytest.raises(ValueError, match=r"^--epochs 2: .*ck has already trained 3 epochs \(--epochs N with N > 3"):
        load_resume_state(tmp_path / "ck", "lm", fewer, d["train"], fw.FRAMEWORK)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir() if p.is_file()} == before
    load_resume_state(tmp_path / "ck", "lm", cfg, d["train"], fw.FRAMEWORK)  # as many: accepted


def test_the_trainer_refuses_fewer_epochs_before_writing(data, tmp_path):
    """Through the command line, --resume A --save B --epochs 1 after 2 epochs: one line, exit 2,
    B never created, A's files unchanged."""
    a, b = tmp_path / "a", tmp_path / "b"
    proc = run_script("train_mlx", "--task", "lm", "--epochs", "2", "--data-dir", data, *TINY, "--save", a)
    assert proc.returncode == 0, proc.stderr
    before = {p: p.read_bytes() for p in a.rglob("*") if p.is_file()}
    for flags in (["--save", b], []):
        proc = run_script("train_mlx", "--resume", a, "--epochs", "1", "--data-dir", data, "--quiet", *flags)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == \
            f"error: --epochs 1: {a} has already trained 2 epochs (--epochs N with N > 2 trains more)"
    assert not b.exists()
    assert {p: p.read_bytes() for p in a.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_resume_needs_the_rng_state(framework, data, tmp_path):
    """Control: resuming with another generator state gives other weights, so the test above
    really checks that the RNG state is restored (dropout is on)."""
    _, fw, cfg, d = _setup(framework, "classify", data, epochs=2)
    spe = batching.steps_per_epoch(cfg, d["train"])
    _train(fw, cfg, d, tmp_path / "ref", None, lambda: False)
    with pytest.raises(errors.Interrupted):
        _train(fw, cfg, d, tmp_path / "b", None, StopAfter(spe + 1))
    rdir = tmp_path / "b" / "resume"
    tensors = ckpt.load_tensors(rdir / "optimizer.safetensors")
    if framework == "mlx":
        tensors["rng.key"] = tensors["rng.key"] ^ np.uint32(1)
    else:
        import torch

        gen = torch.Generator().manual_seed(12345)
        tensors["rng.torch"] = gen.get_state().numpy().copy()
    state = json.loads((rdir / "trainer_state.json").read_text())
    state.pop("files")
    ckpt.save_resume(tmp_path / "b", ckpt.load_tensors(rdir / "model.safetensors"), tensors, state)
    _train(fw, cfg, d, tmp_path / "b", tmp_path / "b", lambda: False)
    assert max_diff(tmp_path / "ref", tmp_path / "b", ("resume/model.safetensors",)) > 1e-4


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_interrupt_in_first_epoch_leaves_a_resumable_checkpoint(framework, data, tmp_path):
    _, fw, cfg, d = _setup(framework, "lm", data, epochs=1)
    with pytest.raises(errors.Interrupted, match="interrupted at epoch 1, step 2;"):
        _train(fw, cfg, d, tmp_path / "ck", None, StopAfter(2))
    # config.json + weights exist (no epoch finished yet), so --resume and evaluate accept it
    weights, config = ckpt.load_checkpoint(tmp_path / "ck", "lm")
    assert ckpt.read_config_json(tmp_path / "ck")["best_epoch"] == 0
    _train(fw, cfg, d, tmp_path / "ck", tmp_path / "ck", lambda: False)
    _train(fw, cfg, d, tmp_path / "ref", None, lambda: False)
    assert max_diff(tmp_path / "ref", tmp_path / "ck") <= TOL


# ----- Ctrl-C on the real scripts ----------------------------------------------------------
def _interrupt_after_first_epoch(cmd: list, cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    """Start ``cmd``, send SIGINT once the first epoch line is printed; (exit code, stdout, stderr)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env())
    out = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:  # the trainers flush each line
            out.append(line)
            if re.search(r"\] epoch +1/", line):
                proc.send_signal(signal.SIGINT)
                break
            assert time.monotonic() < deadline, "no epoch line in time"
        rest, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(out) + rest, err


@pytest.mark.parametrize("script", TRAINERS)
def test_ctrl_c_saves_state_exits_130_and_resume_matches(script, data, tmp_path):
    """Both tasks in one run: Ctrl-C lands in the classifier's training; the LM, not started,
    is recorded as pending; --resume finishes both, equal to an uninterrupted run."""
    flags = ["--data-dir", data, "--epochs", "2", "--dropout", "0.3", "--seed", "5", *TINY]
    ref = run_script(script, *flags, "--save", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    ck = tmp_path / "ck"
    rc, out, err = _interrupt_after_first_epoch([sys.executable, str(SCRIPTS[script]), *map(str, flags),
                                                 "--save", str(ck)], tmp_path)
    assert rc == 130, out + err
    assert "Traceback" not in err
    assert f"resume with --resume {ck}" in err.splitlines()[-1]
    assert (ck / "classify" / "resume" / "trainer_state.json").is_file()
    state = json.loads((ck / "classify" / "resume" / "trainer_state.json").read_text())
    if state["epoch"] < 2:  # interrupted in the classifier (the usual case): the LM waits
        assert (ck / "lm" / "resume" / "pending_config.json").is_file()

    res = run_script(script, "--resume", ck, "--data-dir", data, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "resuming from" in res.stdout
    assert not (ck / "lm" / "resume" / "pending_config.json").exists()
    for task in ("classify", "lm"):
        assert max_diff(tmp_path / "ref" / task, ck / task) <= TOL, task
        lines = (ck / task / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_ctrl_c_with_no_save_then_resume_by_directory_alone(data, tmp_path):
    """--no-save: Ctrl-C still writes a checkpoint (under ./checkpoints) and says where; --resume
    with that directory alone (the task is read from it) finishes the run."""
    script = "train_mlx"
    rc, out, err = _interrupt_after_first_epoch(
        [sys.executable, str(SCRIPTS[script]), "--task", "lm", "--data-dir", str(data), "--epochs", "3", *TINY,
         "--no-save"], tmp_path)
    assert rc == 130, out + err
    m = re.search(r"resume with --resume (\S+)$", err.strip())
    assert m, err
    d = tmp_path / m.group(1)
    assert d.parent == tmp_path / "checkpoints" and (d / "config.json").is_file()
    assert (d / "resume" / "trainer_state.json").is_file()
    finished = json.loads((d / "resume" / "trainer_state.json").read_text())["epoch"]
    assert finished >= 1 and [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()] \
        == list(range(1, finished + 1))  # the finished epochs' records travel with the state
    res = run_script(script, "--resume", d, "--data-dir", data, "--quiet", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout[res.stdout.index("{"):])["lm"]["epochs"] == 3
    assert [json.loads(x)["epoch"] for x in (d / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_interrupted_second_task_with_no_save_names_the_task_to_resume(data, tmp_path, monkeypatch, capsys):
    """--task both --no-save, Ctrl-C in the LM: the finished classifier was not saved, so
    the message says to resume the LM alone (--task lm --resume ROOT), and that works."""
    real = fit.train_task

    def train_task(fw, cfg, d, out, stop, **kw):
        return real(fw, cfg, d, out, StopAfter(3) if cfg.task == "lm" else stop, **kw)

    monkeypatch.setattr(cli, "train_task", train_task)
    monkeypatch.chdir(tmp_path)
    flags = ["--data-dir", str(data), "--epochs", "1", *TINY]
    assert cli.main("mlx", [*flags, "--no-save"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    m = re.search(r"\[lm\] interrupted at epoch 1, step 3; resume with --task lm --resume (\S+)$", err)
    assert m, err
    root = Path(m.group(1))
    assert root.parent == Path("checkpoints") and (root / "lm" / "resume" / "trainer_state.json").is_file()
    monkeypatch.setattr(cli, "train_task", real)
    assert cli.main("mlx", ["--task", "lm", "--resume", str(root), *flags]) == 0
    out = capsys.readouterr().out
    assert "[lm] resuming from" in out and json.loads(out[out.index("\n{") + 1:])["lm"]["epochs"] == 1
