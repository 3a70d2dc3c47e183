"""Brief training on the real text8 data beats both of the exercise's baselines."""

import json
import subprocess
import sys

import numpy as np

from mlx_rnn.core.baselines import FrequencyBasedClassifier
from mlx_rnn.core.data import read_examples
from tests.conftest import ROOT


def test_brief_mlx_training_beats_baselines(data_dir, tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "scripts/train_mlx.py", "--task", "both", "--data-dir", str(data_dir),
         "--epochs", "2", "--hidden-size", "64", "--save", str(tmp_path / "ck"),
         "--output-json", str(out), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())

    cons = read_examples(data_dir / "train-consonant-examples.txt")
    vows = read_examples(data_dir / "train-vowel-examples.txt")
    freq = FrequencyBasedClassifier(cons, vows)
    dev = read_examples(data_dir / "dev-consonant-examples.txt") + read_examples(data_dir / "dev-vowel-examples.txt")
    labels = np.array([0] * 500 + [1] * 500)
    freq_acc = 100.0 * (freq.predict_batch(dev) == labels).mean()

    clf, lm = result["classify"], result["lm"]
    assert clf["total"] == 1000 and clf["accuracy"] > freq_acc, (clf["accuracy"], freq_acc)
    assert lm["sane"] and lm["normalizes"]
    assert lm["perplexity"] < 27.0 * 0.5  # far better than the uniform model
    assert len(clf["epoch_times_s"]) == 2 and all(t > 0 for t in clf["epoch_times_s"])
    assert clf["total_time_s"] >= clf["train_time_s"] >= sum(clf["epoch_times_s"])
    for task in ("classify", "lm"):
        ck = tmp_path / "ck" / task
        assert (ck / "model.safetensors").is_file() and (ck / "config.json").is_file()
        assert len((ck / "metrics.jsonl").read_text().splitlines()) == 2

    # evaluate.py reproduces the saved model's dev figures
    ev = subprocess.run([sys.executable, "scripts/evaluate.py", "--checkpoint", str(tmp_path / "ck" / "lm"),
                         "--data-dir", str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr
    assert abs(json.loads(ev.stdout)["lm"]["perplexity"] - lm["perplexity"]) < 1e-4
