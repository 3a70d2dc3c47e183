"""Transfer from the LM to the classifier, on generated data: held-out windows, --init-from-lm,
--zero-shot-lm (trainers and evaluate.py), and --plot beside them."""

import json

import numpy as np
import pytest

from mlx_rnn.core.config import make_config
from mlx_rnn.core.transfer import heldout_windows, lm_init_weights, zero_shot_predict
from mlx_rnn.core.vocab import TEXT8
from tests.synthetic import fake_checkpoint, make_data_dir, run_script

RUN = ["--epochs", "1", "--batch-size", "8", "--seq-len", "10", "--quiet"]
TINY = ["--hidden-size", "16", "--embed-dim", "8", *RUN]


def test_heldout_windows_label_the_following_letter():
    text = "the cat sat on a mat and ate"
    windows, labels = heldout_windows(text, length=5)
    assert all(len(w) == 5 for w in windows)
    for w, y in zip(windows, labels):
        i = text.index(w) + 5
        assert text[i] != " " and y == int(text[i] in "aeiou")
    assert len(windows) == sum(ch != " " for ch in text[5:])


def test_zero_shot_uses_vowel_probability():
    class Fixed:
        vocab = TEXT8

        def __init__(self, vowel_mass):
            p = np.full(27, (1 - vowel_mass) / 22)
            for v in "aeiou":
                p[TEXT8.index_of(v)] = vowel_mass / 5
            self.lp = np.log(p).astype(np.float32)

        def get_next_char_log_probs(self, context):
            return self.lp

    assert zero_shot_predict(Fixed(0.7), ["abc", "def"]).tolist() == [1, 1]
    assert zero_shot_predict(Fixed(0.3), ["abc"]).tolist() == [0]


def test_lm_init_weights_drop_the_output_layer(tmp_path):
    from mlx_rnn.core.checkpoint import load_checkpoint

    w, cfg = load_checkpoint(fake_checkpoint(tmp_path / "lm", "lm"))
    sub = lm_init_weights(w, cfg, TEXT8)
    assert "embedding.weight" in sub and "lstm.weight_hh_l0" in sub and not any(k.startswith("output.") for k in sub)
    with pytest.raises(ValueError):
        lm_init_weights(w, make_config("classify"), TEXT8)


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_transfer_modes_and_plot(tmp_path, script):
    data = make_data_dir(tmp_path / "data")
    lm = tmp_path / "lm"
    proc = run_script(script, "--task", "lm", "--data-dir", data, "--save", lm, "--plot", tmp_path / "lm.png", *TINY)
    assert proc.returncode == 0, proc.stderr
    png = (tmp_path / "lm.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000

    out = tmp_path / "init.json"
    proc = run_script(script, "--task", "classify", "--data-dir", data, "--init-from-lm", lm,
                      "--output-json", out, *RUN, "--no-save")
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads(out.read_text())["classify"]
    assert bundle["config"]["init_from_lm"] and bundle["config"]["hidden_size"] == 16
    assert set(bundle["heldout"]) == {"correct", "total", "accuracy"} and bundle["heldout"]["total"] > 0
    assert "held-out accuracy" in proc.stdout

    out = tmp_path / "zs.json"
    proc = run_script(script, "--task", "classify", "--data-dir", data, "--zero-shot-lm", lm,
                      "--output-json", out, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing trained: no checkpoint directory by default
    bundle = json.loads(out.read_text())["classify"]
    assert bundle["epochs"] == 0 and bundle["total"] == 40 and bundle["heldout"]["total"] > 0
    assert "zero-shot" in proc.stdout

    bad = run_script(script, "--task", "classify", "--data-dir", data, "--zero-shot-lm", tmp_path / "nope", "--quiet")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    # sizes come from the LM: a conflicting size flag is refused, as is a transfer flag without the classifier
    bad = run_script(script, "--task", "classify", "--data-dir", data, "--init-from-lm", lm, *TINY)
    assert bad.returncode == 2 and "drop --embed-dim, --hidden-size" in bad.stderr
    bad = run_script(script, "--task", "lm", "--data-dir", data, "--zero-shot-lm", lm, "--quiet")
    assert bad.returncode == 2 and "applies to the classifier" in bad.stderr


def test_evaluate_zero_shot(tmp_path):
    data = make_data_dir(tmp_path / "data")
    lm = fake_checkpoint(tmp_path / "lm", "lm")
    out = tmp_path / "e.json"
    proc = run_script("evaluate", "--zero-shot-lm", lm, "--consonant", data / "dev-consonant-examples.txt",
                      "--vowel", data / "dev-vowel-examples.txt", "--output-json", out)
    assert proc.returncode == 0, proc.stderr
    b = json.loads(out.read_text())["classify"]
    assert b["total"] == 40 and b["config"]["task"] == "classify" and b["config"]["zero_shot_lm"]
    both = run_script("evaluate", "--zero-shot-lm", lm, "--checkpoint", lm)
    assert both.returncode == 2 and "one of" in both.stderr


def test_two_task_root_is_named_and_not_overwritten(tmp_path):
    root = tmp_path / "runs"
    fake_checkpoint(root / "classify", "classify")
    fake_checkpoint(root / "lm", "lm")
    proc = run_script("sample", "--checkpoint", root)
    assert proc.returncode == 2 and "two-task run" in proc.stderr and str(root / "lm") in proc.stderr
    data = make_data_dir(tmp_path / "data")
    proc = run_script("train_mlx", "--task", "classify", "--data-dir", data, "--save", root, *TINY)
    assert proc.returncode == 2 and "two-task run" in proc.stderr
    assert not (root / "config.json").exists()


def test_sample_rejects_non_finite_temperature(tmp_path):
    lm = fake_checkpoint(tmp_path / "lm", "lm")
    for t in ("nan", "inf", "-1"):
        proc = run_script("sample", "--checkpoint", lm, "--temperature", t, "--length", "5")
        assert proc.returncode == 2 and "--temperature" in proc.stderr and "Traceback" not in proc.stderr


def test_zero_shot_from_an_lm_of_another_alphabet_names_it(tmp_path, capsys):
    from mlx_rnn.run.cli import main

    data = make_data_dir(tmp_path / "data")
    lm = fake_checkpoint(tmp_path / "lm", "lm")
    cfg = json.loads((lm / "config.json").read_text())
    cfg.update(vocab=cfg["vocab"].replace("q", "Q"), vocab_kind="corpus")  # an LM of another text
    (lm / "config.json").write_text(json.dumps(cfg))
    rc = main("mlx", ["--task", "classify", "--data-dir", str(data), "--zero-shot-lm", str(lm), "--no-save"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1] == (f"error: --zero-shot-lm {lm}: the LM's alphabet lacks 'q' of the classifier's "
                                   "text8 symbols (a-z and space): it was trained on another text"), err
