"""scripts/seeds.py: one trainer run per seed, mean and sample std of the measured figures."""

import json
import statistics

import pytest

from mlx_rnn.tools.seeds import format_table, summarize
from synthetic import TINY, error_line, make_data_dir, run_script


def test_summarize_mean_and_sample_std():
    runs = [{"classify": {"accuracy": a, "heldout": {"accuracy": h}}, "lm": {"perplexity": p, "bits_per_char": b}}
            for a, h, p, b in ((80.0, 70.0, 4.0, 2.0), (90.0, 80.0, 3.0, 1.6), (70.0, 90.0, 5.0, 2.3))]
    s = summarize(runs, [10.0, 12.0, 14.0])  # accuracies in percent, as the trainers' bundles
    assert s["classify dev accuracy"]["mean"] == pytest.approx(80.0)
    assert s["classify dev accuracy"]["std"] == pytest.approx(10.0)  # ddof=1
    assert s["lm dev perplexity"]["values"] == [4.0, 3.0, 5.0]
    assert s["wall time s"]["std"] == pytest.approx(2.0)
    table = format_table(s)
    assert "| classify dev accuracy | 80.0 ± 10.0% | 80.0, 90.0, 70.0 |" in table
    # a figure missing from one run is left out, not averaged over the others
    runs[1]["lm"].pop("perplexity")
    assert "lm dev perplexity" not in summarize(runs, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_seeds_runs_each_seed(tmp_path, framework):
    data = make_data_dir(tmp_path / "data")
    out = tmp_path / "seeds.json"
    proc = run_script("seeds", "--framework", framework, "--seeds", "0", "1", "--output-json", out, "--",
                      "--data-dir", data, "--task", "both", "--epochs", "1", "--save", tmp_path / "ck{seed}", *TINY)
    assert proc.returncode == 0, proc.stderr
    for seed in (0, 1):  # {seed} in a trainer flag became the seed
        assert (tmp_path / f"ck{seed}" / "lm" / "model.safetensors").is_file()
    doc = json.loads(out.read_text())
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    assert [r["result"]["lm"]["config"]["seed"] for r in doc["runs"]] == [0, 1]
    assert all(r["result"]["lm"]["config"]["framework"] == framework for r in doc["runs"])
    ppl = [r["result"]["lm"]["perplexity"] for r in doc["runs"]]
    assert ppl[0] != ppl[1]  # the seed reached the trainer
    st = doc["summary"]["lm dev perplexity"]
    assert st["mean"] == pytest.approx(statistics.fmean(ppl)) and st["std"] == pytest.approx(statistics.stdev(ppl))
    assert "classify held-out accuracy" in doc["summary"] and "wall time s" in doc["summary"]
    assert "mean ± std" in proc.stdout
    acc = [r["result"]["classify"]["accuracy"] for r in doc["runs"]]  # percent
    assert f"| classify dev accuracy | {statistics.fmean(acc):.1f} ± " in proc.stdout


def test_seeds_failing_trainer_and_usage(tmp_path):
    proc = run_script("seeds", "--seeds", "0", "--", "--data-dir", tmp_path / "missing", *TINY)
    assert proc.returncode == 2
    assert "seed 0: trainer exited with code 2" in proc.stderr
    proc = run_script("seeds", "--", "--seed", "3")
    assert proc.returncode == 2 and "--seed is set by seeds.py" in error_line(proc)
    proc = run_script("seeds", "--seeds", "1", "1")
    assert proc.returncode == 2 and "distinct" in error_line(proc)
    for save in (["--save", "runs/x"], ["--save=runs/x"]):
        proc = run_script("seeds", "--seeds", "0", "1", "--", *TINY, *save)
        assert proc.returncode == 2 and error_line(proc) == (
            "error: --save runs/x has no {seed}: every seed would use the same directory "
            "(e.g. --save runs/seed{seed})"), proc.stderr
    proc = run_script("seeds", "--seeds", "0", "1", "--", "--resume", "runs/x")
    assert proc.returncode == 2 and "--resume runs/x has no {seed}" in error_line(proc), proc.stderr
    afile = tmp_path / "afile"
    afile.write_text("x")
    for logs, cause in [(afile, "exists and is not a directory"), ("/proc/mlx-rnn-logs", "cannot write in /proc")]:
        proc = run_script("seeds", "--seeds", "0", "--keep-logs", logs, "--", *TINY)
        line = error_line(proc)
        assert proc.returncode == 2 and line.startswith(f"error: --keep-logs {logs}: ") and cause in line, proc.stderr
        assert "[seeds] seed 0" not in proc.stdout  # refused before any training
