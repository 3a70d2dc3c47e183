"""scripts/plot.py: a finished run's curves from its metrics.jsonl, in the format the suffix names."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.synthetic import TINY, error_line, make_data_dir, run_script

pytest.importorskip("matplotlib")

from mlx_rnn.tools.plot import main  # noqa: E402

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF", ".svg": b"<?xml"}


def _records(task: str, n: int = 3) -> list[dict]:
    out = []
    for e in range(1, n + 1):
        rec = dict(epoch=e, train_loss=2.0 / e, val_loss=2.1 / e, epoch_time_s=0.5, elapsed_s=0.5 * e, steps=4,
                   best=True)
        rec.update(dev_accuracy=60.0 + e) if task == "classify" else rec.update(dev_bits_per_char=3.0 / e)
        out.append(rec)
    return out


def _run_dir(path, task):
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(task)))
    (path / "config.json").write_text(json.dumps({"task": task}))
    return path


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_plot_writes_the_format_the_suffix_names(tmp_path, suffix, capsys):
    run = _run_dir(tmp_path / "lm", "lm")
    out = tmp_path / f"curves{suffix}"
    assert main(["--metrics", str(run), "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.read_bytes().startswith(MAGIC[suffix])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves" + suffix, "lm"]  # no temporary file left


def test_plot_a_file_and_a_two_task_root(tmp_path, capsys):
    root = tmp_path / "run"
    _run_dir(root / "classify", "classify")
    _run_dir(root / "lm", "lm")
    assert main(["--metrics", str(root), "--out", str(tmp_path / "c.png")]) == 0, capsys.readouterr().err
    assert (tmp_path / "c-classify.png").is_file() and (tmp_path / "c-lm.png").is_file()
    (root / "lm" / "config.json").unlink()  # task from the records then
    assert main(["--metrics", str(root / "lm" / "metrics.jsonl"), "--out", str(tmp_path / "one.png")]) == 0
    assert (tmp_path / "one.png").read_bytes().startswith(MAGIC[".png"])


@pytest.mark.parametrize("case", ["unknown-suffix", "no-suffix", "missing", "corrupt", "empty", "not-a-run",
                                  "not-a-number"])
def test_plot_bad_input_is_one_line_exit_2(tmp_path, case, capsys):
    run = _run_dir(tmp_path / "lm", "lm")
    out, metrics, needle = tmp_path / "curves.png", run, None
    if case == "unknown-suffix":
        out, needle = tmp_path / "curves.xyz", "unknown image format '.xyz' (matplotlib writes"
    elif case == "no-suffix":
        out, needle = tmp_path / "curves", "no file suffix to name the image format"
    elif case == "missing":
        metrics, needle = tmp_path / "nowhere" / "metrics.jsonl", "file not found"
    elif case == "corrupt":
        with open(run / "metrics.jsonl", "a") as f:
            f.write("{not json\n")
        needle = f"{run / 'metrics.jsonl'}:4: not JSON"
    elif case == "not-a-number":
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"epoch": 4, "train_loss": "x", "val_loss": 1.0}\n')
        needle = f"{run / 'metrics.jsonl'}:4: train_loss is 'x', not a number"
    elif case == "empty":
        (run / "metrics.jsonl").write_text("")
        needle = "no epoch records"
    else:
        metrics, needle = run / "resume", "no metrics.jsonl here"
        metrics.mkdir()
    assert main(["--metrics", str(metrics), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not out.exists() and not list(tmp_path.glob("curves*"))


def test_plot_script_and_help(tmp_path):
    run = _run_dir(tmp_path / "c", "classify")
    proc = subprocess.run([sys.executable, "scripts/plot.py", "--metrics", str(run), "--out", str(tmp_path / "c.svg")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'c.svg'} (3 epochs" in proc.stdout
    assert "<svg" in (tmp_path / "c.svg").read_text()
    usage = subprocess.run([sys.executable, "scripts/plot.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: plot.py ")


def test_trainer_refuses_an_unknown_plot_suffix_before_training(tmp_path):
    data = make_data_dir(tmp_path / "data")
    proc = run_script("train_mlx", "--task", "lm", "--data-dir", data, "--epochs", "1", "--save", tmp_path / "ck",
                      "--plot", tmp_path / "curves.xyz", *TINY)
    assert proc.returncode == 2
    assert "--plot" in error_line(proc) and "unknown image format" in error_line(proc)
    assert not (tmp_path / "ck").exists()
