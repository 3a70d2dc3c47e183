"""Corrupt, truncated or mismatched checkpoints given to the real scripts, and diverging runs.

A bad checkpoint (to evaluate.py, or to a trainer's --resume) is one line on stderr naming
the file and the cause, exit code 2, no traceback, and not one file of the checkpoint
changed; a run whose loss turns non-finite exits 3, naming the epoch and step, with the last
good checkpoint kept. Each case runs the scripts as a subprocess, as in test_bad_input.py
(bad data files, no data, bad flags); the generated data directory (``good_data``) is a
fixture of conftest.py.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.data import LM_FILES
from tests.synthetic import FRAMEWORK, TINY, TRAINERS, error_line, fake_checkpoint, fingerprint, run_script

LMDEV = LM_FILES["dev"]


# ----- 4. corrupt, truncated or mismatched checkpoints ---------------------------------------------
def _edit_config(**changes):
    def edit(d: Path):
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(changes)
        (d / "config.json").write_text(json.dumps(cfg))
    return edit


def _truncate(name):
    def edit(d: Path):
        raw = (d / name).read_bytes()
        (d / name).write_bytes(raw[: len(raw) // 2])
    return edit


def _garbage(name):
    def edit(d: Path):
        (d / name).write_bytes(b"this is not a safetensors file at all" * 10)
    return edit


def _remove(name):
    def edit(d: Path):
        (d / name).unlink()
    return edit


def _write(name, text):
    def edit(d: Path):
        (d / name).write_text(text)
    return edit


def _nan_weight(name):
    def edit(d: Path):
        weights = ckpt.load_tensors(d / "model.safetensors")
        weights[name][0, 0] = np.nan
        ckpt.save_tensors(d / "model.safetensors", weights)
    return edit


# corruption -> (edit, expected message after "error: {dir}")
CKPT_CASES = {
    "garbage-weights": (_garbage("model.safetensors"), r"/model.safetensors: corrupt or truncated safetensors file"),
    "truncated-weights": (_truncate("model.safetensors"), r"/model.safetensors: corrupt or truncated safetensors file"),
    "missing-weights": (_remove("model.safetensors"), r"/model.safetensors: file not found"),
    "missing-config": (_remove("config.json"), r"/config.json: file not found \(not a checkpoint directory\?\)"),
    "bad-json": (_write("config.json", '{"task": "lm", '), r"/config.json: corrupt JSON"),
    "json-not-object": (_write("config.json", "[1, 2]"), r"/config.json: expected a JSON object"),
    "format-version": (_edit_config(format_version=99), r"/config.json: unsupported format_version 99"),
    "sizes": (_edit_config(hidden_size=32), r"/model.safetensors: lstm.weight_ih_l0 has shape \(64, 8\), "
                                            r"config.json implies \(128, 8\)"),
    "layers": (_edit_config(num_layers=3), r"/model.safetensors: does not match config.json \(missing \["),
    "vocab-size": (_edit_config(vocab_size=28), r"/config.json: vocab has 27 symbols but vocab_size is 28"),
    "vocab-type": (_edit_config(vocab=27), r"/config.json: 'vocab' must be a non-empty string"),
    "vocab-repeated": (_edit_config(vocab="abcdefghijklmnopqrstuvwxyza"), r"/config.json: 'vocab' must be"),
    "size-type": (_edit_config(hidden_size="16"), r"/config.json: 'hidden_size' must be a positive integer"),
    "unknown-task": (_edit_config(task="translate"), r"/config.json: unknown task 'translate'"),
    "nan-weight": (_nan_weight("lstm.weight_hh_l0"), r"/model.safetensors: lstm.weight_hh_l0 holds NaN or inf values"),
}


def _check_failure(proc, d: Path, pattern: str, before: dict):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = error_line(proc)
    assert re.match(f"error: {re.escape(str(d))}{pattern}", line), line
    assert fingerprint(d) == before, "a file of the checkpoint was changed"


@pytest.mark.parametrize("framework", ["mlx", "torch"])
@pytest.mark.parametrize("case", list(CKPT_CASES))
def test_evaluate_bad_checkpoint(case, framework, good_data, tmp_path):
    d = fake_checkpoint(tmp_path / "ck", "lm")
    edit, pattern = CKPT_CASES[case]
    edit(d)
    before = fingerprint(d)
    proc = run_script("evaluate", "--checkpoint", d, "--framework", framework, "--data-dir", good_data)
    _check_failure(proc, d, pattern, before)


def test_evaluate_vocabulary_mismatch(good_data, tmp_path):
    """A checkpoint whose vocabulary lacks a character of the text: named with its position."""
    d = fake_checkpoint(tmp_path / "ck", "lm")
    _edit_config(vocab="abcdefghijklmnopqrstuvwxyz_")(d)
    proc = run_script("evaluate", "--checkpoint", d, "--data-dir", good_data)
    assert proc.returncode == 2
    assert re.match(rf"error: {re.escape(str(good_data / LMDEV))}:1:\d+: character ' ' \(U\+0020\) is not in the "
                    r"vocabulary$", error_line(proc))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, good_data) -> dict:
    """One epoch of tiny training per framework and task, with resumable state: {(script, task): dir}."""
    root = tmp_path_factory.mktemp("trained")
    out = {}
    for script in TRAINERS:
        proc = run_script(script, "--data-dir", good_data, "--epochs", "1", "--dropout", "0.2", *TINY,
                          "--save", root / script)
        assert proc.returncode == 0, proc.stderr
        for task in ("classify", "lm"):
            out[(script, task)] = root / script / task
            assert (root / script / task / "resume" / "trainer_state.json").is_file()
    return out


def _state_edit(**changes):
    def edit(d: Path):
        p = d / "resume" / "trainer_state.json"
        st = json.loads(p.read_text())
        st.update(changes)
        p.write_text(json.dumps(st))
    return edit


def _swap_resume_weights(d: Path):
    """Valid tensors, but not the ones trainer_state.json was saved with (a crash between renames)."""
    w = ckpt.load_tensors(d / "resume" / "model.safetensors")
    ckpt.save_tensors(d / "resume" / "model.safetensors", {k: v + 1 for k, v in w.items()})


def _drop_optimizer_tensor(d: Path):
    t = ckpt.load_tensors(d / "resume" / "optimizer.safetensors")
    name = next(k for k in t if k.startswith("optimizer.output.weight."))
    del t[name]
    ckpt.save_tensors(d / "resume" / "optimizer.safetensors", t)
    _state_edit(files=None)(d)


RESUME_CASES = dict(CKPT_CASES)
RESUME_CASES.update({
    # --resume names the cause: a directory without config.json never committed a checkpoint
    "missing-config": (_remove("config.json"), r": nothing to resume: no checkpoint was committed there \(no config.json"),
    "wrong-task": (_edit_config(task="lm"), r": checkpoint is for task 'lm', not 'classify'"),
    "missing-setting": (lambda d: _edit_config()(d) or _config_drop(d, "lr"), r"/config.json: missing training settings lr"),
    "bad-setting": (_edit_config(dropout=1.5), r"/config.json: 'dropout' must be a number in \[0, 1\)"),
    "no-state": (_remove("resume/trainer_state.json"), r"/resume/trainer_state.json: file not found \(nothing to resume\)"),
    "state-bad-json": (_write("resume/trainer_state.json", "{"), r"/resume/trainer_state.json: corrupt JSON"),
    "state-missing-key": (lambda d: _state_drop(d, "epoch"), r"/resume/trainer_state.json: missing key 'epoch'"),
    "state-bad-value": (_state_edit(step=-4), r"/resume/trainer_state.json: bad value for 'step': -4"),
    "state-step-beyond-epoch": (_state_edit(step=10**6), r"/resume/trainer_state.json: stopped at step 1000000"),
    "optimizer-truncated": (_truncate("resume/optimizer.safetensors"),
                            r"/resume/optimizer.safetensors: corrupt or truncated safetensors file"),
    "optimizer-incomplete": (_drop_optimizer_tensor,
                             r"/resume/optimizer.safetensors: incomplete, no optimizer\.output\.weight\.\w+$"),
    # the resumable weights are checked first
    "sizes": (_edit_config(hidden_size=32), r"/resume/model.safetensors: lstm.weight_ih_l0 has shape \(64, 8\), "
                                            r"config.json implies \(128, 8\)"),
    "layers": (_edit_config(num_layers=3), r"/resume/model.safetensors: does not match config.json \(missing \["),
    "resume-weights-swapped": (_swap_resume_weights, r"/resume/model.safetensors: does not match trainer_state.json"),
})
del RESUME_CASES["unknown-task"]  # covered by wrong-task (and by evaluate)


def _config_drop(d: Path, key: str):
    cfg = json.loads((d / "config.json").read_text())
    del cfg[key]
    (d / "config.json").write_text(json.dumps(cfg))


def _state_drop(d: Path, key: str):
    p = d / "resume" / "trainer_state.json"
    st = json.loads(p.read_text())
    del st[key]
    p.write_text(json.dumps(st))


@pytest.mark.parametrize("case", list(RESUME_CASES))
@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_resume_bad_checkpoint(script, case, trained, good_data, tmp_path):
    d = tmp_path / "ck"
    shutil.copytree(trained[(script, "classify")], d)
    edit, pattern = RESUME_CASES[case]
    edit(d)
    before = fingerprint(d)
    proc = run_script(script, "--task", "classify", "--resume", d, "--data-dir", good_data, "--epochs", "2",
                      "--quiet")
    _check_failure(proc, d, pattern, before)


@pytest.mark.parametrize("script", TRAINERS)
def test_trainer_resume_other_framework_or_settings(script, trained, good_data, tmp_path):
    d = tmp_path / "ck"
    shutil.copytree(trained[(script, "lm")], d)
    before = fingerprint(d)
    other = "torch" if script == "train_mlx" else "mlx"
    _state_edit(framework=other)(d)
    before = fingerprint(d)
    proc = run_script(script, "--resume", d, "--data-dir", good_data, "--epochs", "2", "--quiet")
    _check_failure(proc, d, rf"/resume/trainer_state.json: resumable state was written by '{other}', not "
                            rf"'{FRAMEWORK[script]}'; resume it with train_{other}.py", before)
    _state_edit(framework=FRAMEWORK[script])(d)
    before = fingerprint(d)
    proc = run_script(script, "--resume", d, "--data-dir", good_data, "--epochs", "2", "--hidden-size", "32")
    assert proc.returncode == 2
    assert error_line(proc).startswith("error: --hidden-size 32 differs from the resumed run's 16")
    assert fingerprint(d) == before
    proc = run_script(script, "--resume", tmp_path / "nothing", "--data-dir", good_data)
    assert proc.returncode == 2
    assert error_line(proc) == f"error: {tmp_path / 'nothing'}: checkpoint directory not found (nothing to resume)"


# ----- 5. a diverging run: exit 3, epoch and step named, the last good checkpoint kept ------------
@pytest.mark.parametrize("task", ["classify", "lm"])
@pytest.mark.parametrize("script", TRAINERS)
def test_diverged_run_exits_3(script, task, good_data, tmp_path):
    """An absurd learning rate with decoupled weight decay and no clipping overflows float32
    within a few steps in both frameworks (p <- p (1 - lr wd))."""
    proc = run_script(script, "--task", task, "--data-dir", good_data, "--epochs", "2", *TINY,
                      "--lr", "1e30", "--weight-decay", "1", "--clip-norm", "0", "--save", tmp_path / "ck")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = error_line(proc)
    assert re.match(rf"error: \[{task}\] training diverged: non-finite loss at epoch 1, step \d+; nothing was saved "
                    r"\(try a lower --lr or --clip-norm\)$", line), line
    assert not (tmp_path / "ck" / "model.safetensors").exists()


@pytest.mark.parametrize("script", TRAINERS)
def test_diverged_run_keeps_the_last_good_checkpoint(script, trained, good_data, tmp_path):
    """Resume a good one-epoch checkpoint with an absurd learning rate written into its
    config.json: epoch 2 diverges, and not one file of the checkpoint changes."""
    d = tmp_path / "ck"
    shutil.copytree(trained[(script, "classify")], d)
    _edit_config(lr=1e30, weight_decay=1.0, clip_norm=0.0)(d)
    before = fingerprint(d)
    proc = run_script(script, "--resume", d, "--data-dir", good_data, "--epochs", "3", "--quiet")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = error_line(proc)
    assert re.match(rf"error: \[classify\] training diverged: non-finite loss at epoch 2, step \d+; the last good "
                    rf"checkpoint is in {re.escape(str(d))} ", line), line
    assert fingerprint(d) == before
