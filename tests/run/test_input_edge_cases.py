"""Small fault cases: the contamination note says the count, texts without
letters are refused, --normalize does not score a file's final newline, a classifier batch larger
than the training set is refused, a checkpoint written before the later settings is read with
them filled in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import taskdata
from mlx_rnn.run import evaluation
from mlx_rnn.core.config import make_config
from mlx_rnn.core.data import DataError, read_text
from mlx_rnn.core.transfer import heldout_note
from tests.synthetic import TINY, fake_checkpoint, make_data_dir, run_script


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("data"))


def test_contamination_note_follows_the_count(capsys):
    assert "3 of the 360 standard dev windows occur verbatim" in heldout_note(3, 360)
    assert "all standard dev windows occur verbatim" in heldout_note(1000, 1000)
    assert "all" not in heldout_note(3, 360).split(";")[1]
    bundle = {"accuracy": 80.0, "heldout": {"accuracy": 70.0, "correct": 7, "total": 10},
              "dev_windows_in_lm_train": 3, "total": 360}
    evaluation.print_heldout(bundle, "direct")
    out = capsys.readouterr().out
    assert "3 of the 360 standard dev windows" in out and "windows all occur" not in out


@pytest.mark.parametrize("text", ["!!!???", "  \n", "...\n"])
def test_a_text_without_letters_is_refused_after_normalisation(tmp_path, text):
    f = tmp_path / "t.txt"
    f.write_text(text)
    with pytest.raises(DataError, match="no letters or digits left after normalisation"):
        read_text(f, normalize=True)


@pytest.mark.parametrize("raw, want", [("hello world\n", "hello world"), ("hello world\r\n", "hello world"),
                                       ("hello world", "hello world"), ("Hello, World!\n", "hello world ")])
def test_normalize_does_not_score_the_final_newline(tmp_path, raw, want):
    f = tmp_path / "t.txt"
    f.write_bytes(raw.encode())
    assert read_text(f, normalize=True) == want


def test_evaluate_refuses_a_text_without_letters_and_scores_11_characters_for_hello_world(tmp_path, data):
    ck = fake_checkpoint(tmp_path / "ck", "lm")
    bad = tmp_path / "bad.txt"
    bad.write_text("!!!???")
    proc = run_script("evaluate", "--checkpoint", ck, "--text", bad, "--normalize")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "no letters" in proc.stderr
    good = tmp_path / "good.txt"
    good.write_text("hello world\n")
    proc = run_script("evaluate", "--checkpoint", ck, "--text", good, "--normalize", "--framework", "torch")
    assert proc.returncode == 0, proc.stderr
    import json

    lm = json.loads(proc.stdout)["lm"]
    assert lm["log_prob"] / lm["avg_log_prob"] == pytest.approx(11)


def test_a_classifier_batch_larger_than_the_training_set_is_refused(data):
    cfg = make_config("classify", batch_size=500)
    train = (None, [0] * 100)
    with pytest.raises(ValueError, match=r"--batch-size 500 is larger than the 100 training examples"):
        taskdata.check_trainable(cfg, train, "train.txt")
    proc = run_script("train_mlx", "--task", "classify", "--data-dir", data, *TINY, "--batch-size", "100000")
    assert proc.returncode == 2 and "is larger than the" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_an_older_checkpoint_is_read_with_the_later_settings_filled_in(tmp_path, task):
    """config.json without cell, weight_drop, input_dropout, calibrate, prefix_weight: every reader
    (load_checkpoint, read_config) gets what such a run was trained with."""
    path = fake_checkpoint(tmp_path / task, task)
    cfg = json.loads((path / "config.json").read_text())
    for key in ("cell", "weight_drop", "input_dropout", "calibrate", "prefix_weight"):
        cfg.pop(key, None)
    cfg["dropout"] = 0.3
    (path / "config.json").write_text(json.dumps(cfg))
    _, got = ckpt.load_checkpoint(path, task)
    assert (got.cell, got.weight_drop, got.input_dropout) == ("lstm", 0.0, 0.3)
    assert got.calibrate is (False if task == "lm" else None)
    assert got.prefix_weight == (0.0 if task == "classify" else None)
