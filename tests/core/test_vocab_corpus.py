"""--vocab corpus: the alphabet comes from the training text (capitals, punctuation, newlines)."""

import json

import pytest

from tests.synthetic import run_script

TEXT = ("The cat sat on the mat. A dog, barking loudly, ran past!\nWhy? Because it could: 42 times.\n"
        "New lines matter too; so do CAPITALS.\n")


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "text8-100k.txt").write_text(TEXT * 60, encoding="utf-8")
    (d / "text8-dev.txt").write_text(TEXT[::-1].strip() + "\n", encoding="utf-8")
    return d


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_corpus_vocabulary_trains_evaluates_and_samples_in_both_frameworks(script, data_dir, tmp_path):
    ck, out = tmp_path / "ck", tmp_path / "r.json"
    proc = run_script(script, "--task", "lm", "--vocab", "corpus", "--data-dir", data_dir, "--epochs", "1",
                      "--hidden-size", "16", "--embed-dim", "8", "--batch-size", "4", "--seq-len", "20",
                      "--quiet", "--save", ck, "--output-json", out)
    assert proc.returncode == 0, proc.stderr
    lm = json.loads(out.read_text())["lm"]
    vocab = json.loads((ck / "config.json").read_text())["vocab"]
    assert vocab == "".join(sorted(set(TEXT.rstrip("\n") * 2 + "\n")))
    assert "\n" in vocab and "T" in vocab and "?" in vocab
    assert lm["sane"] and lm["normalizes"]
    for fw in ("mlx", "torch"):  # one checkpoint, both frameworks, same figure
        ev = run_script("evaluate", "--checkpoint", ck, "--data-dir", data_dir, "--framework", fw)
        assert ev.returncode == 0, ev.stderr
        assert abs(json.loads(ev.stdout)["lm"]["perplexity"] - lm["perplexity"]) < 1e-4 * lm["perplexity"]
    texts = [run_script("sample", "--checkpoint", ck, "--prime", "The ", "--length", "40", "--seed", "2",
                        "--framework", fw, "--no-prime") for fw in ("mlx", "torch")]
    assert all(t.returncode == 0 for t in texts)
    assert texts[0].stdout == texts[1].stdout and set(texts[0].stdout.rstrip("\n")) <= set(vocab)
    bad = run_script("sample", "--checkpoint", ck, "--prime", "Zebra")
    assert bad.returncode == 2 and "'Z'" in bad.stderr


def test_corpus_vocabulary_refuses_normalize(data_dir):
    proc = run_script("train_mlx", "--task", "lm", "--vocab", "corpus", "--normalize", "--data-dir", data_dir,
                      "--epochs", "1", "--quiet")
    assert proc.returncode == 2 and "--normalize" in proc.stderr
