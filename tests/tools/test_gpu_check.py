"""The GPU check (scripts/gpu_check.py) and the `gpu` marker, as far as a machine without a GPU
can check them: the marker selects exactly the accelerator tests, the report is built from the
steps' own outputs, the check says in one line that there is no GPU."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_rnn.tools import gpu_check as gc
from tests.synthetic import error_line, run_script

ROOT = Path(__file__).resolve().parents[2]  # the repository
DEVICE_TESTS = ["tests/test_parity.py", "tests/test_parity_training.py", "tests/native/test_native_errors.py"]


def _collect(*args) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr  # 5: nothing collected
    return [ln for ln in proc.stdout.splitlines() if "::" in ln]


def test_the_gpu_marker_selects_every_accelerator_test_and_nothing_else():
    marked = _collect("-m", "gpu", *DEVICE_TESTS)
    by_name = _collect("-k", "gpu or cuda or mps", *DEVICE_TESTS)
    assert len(marked) >= 60, marked  # the parity suite's GPU device pairs (66 on 2026-12-04)
    assert sorted(marked) == sorted(by_name)
    assert all(re.search(r"gpu|cuda|mps", t) for t in marked)
    cpu_only = _collect("-m", "not gpu", *DEVICE_TESTS)
    assert cpu_only and not any(re.search(r"mlx_gpu|torch_cuda|torch_mps", t) for t in cpu_only)


def _gpu_here() -> bool:
    try:
        gc.find_gpus()
        return True
    except gc.NoGPU:
        return False


@pytest.mark.skipif(_gpu_here(), reason="this machine has a GPU")
def test_without_a_gpu_the_check_says_so_in_one_line_and_exits_2():
    proc = run_script("gpu_check")
    assert proc.returncode == 2
    assert error_line(proc).startswith("gpu-check: ") and "GPU" in error_line(proc)
    assert run_script("gpu_check", "--steps", "tests,nonsense").returncode == 2


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="pytest" errors="1" failures="2" skipped="3" '
                   'tests="10"></testsuite></testsuites>')
    assert gc.junit_counts(xml) == {"tests": 10, "failed": 2, "errors": 1, "skipped": 3, "passed": 4}
    assert gc.junit_counts(tmp_path / "missing.xml")["passed"] == 0


def test_the_tests_step_runs_pytest_and_counts_from_its_xml(tmp_path):
    """The real step on this machine's devices: without a GPU every selected test is skipped, so the
    check cannot pass (it needs at least one GPU test to run)."""
    gpus = {"mlx": "cpu", "torch": "cpu", "name": "test", "versions": {"mlx": "-", "torch": "-"}}
    report = gc.check(gpus, ["tests"], tmp_path, timeout=600)
    t = report["tests"]
    if not _gpu_here():
        assert t["tests"] >= 60 and t["skipped"] == t["tests"] and t["passed"] == 0 and t["failed"] == 0
        assert report["passed"] is False
    assert (tmp_path / "gpu-tests.log").is_file()


def _report(mlx_ppl=3.65, torch_acc=82.0, bench_rc=0) -> dict:
    train = {fw: {"exit_code": 0, "wall_s": w, "tasks": {"classify": {"accuracy": acc}, "lm": {"perplexity": ppl}}}
             for fw, w, acc, ppl in (("mlx", 30.0, 81.1, mlx_ppl), ("torch", 20.0, torch_acc, 3.69))}
    for fw in train:
        train[fw]["quality_met"] = all(gc.meets_bar(t, list(v.values())[0]) for t, v in train[fw]["tasks"].items())
    report = {"device": "NVIDIA H200", "devices": {"mlx": "gpu", "torch": "cuda"},
              "versions": {"mlx": "0.32.4", "torch": "2.11"},
              "tests": {"tests": 66, "passed": 66, "failed": 0, "errors": 0, "skipped": 0, "exit_code": 0, "wall_s": 160},
              "bench": {"median_epoch_s": {"lm": {"mlx": 0.5, "torch": 0.8}}, "ratios": {"lm": 0.625},
                        "exit_code": bench_rc, "wall_s": 58},
              "train": dict(train, wall_ratio=1.5)}
    report["passed"] = gc._passed(report)
    return report


def test_the_report_passes_only_when_every_check_does():
    assert _report()["passed"] is True
    assert _report(mlx_ppl=3.71)["passed"] is False  # the LM bar is <= 3.7
    assert _report(torch_acc=79.9)["passed"] is False  # the classifier's bar is >= 80 %
    assert _report(bench_rc=1)["passed"] is False


def test_the_summary_table_names_the_gpu_and_every_check():
    text = gc.summary_table(_report(mlx_ppl=3.71))
    assert text.splitlines()[0].startswith("GPU check on NVIDIA H200") and "FAILED" in text.splitlines()[0]
    assert "| GPU tests (pytest -m gpu, 160 s) | 66 passed, 0 failed, 0 errors, 0 skipped |" in text
    assert "| lm epoch (--quick, median) | 0.5 s | 0.8 s | 0.625 |" in text
    assert "| default run, lm perplexity (bar <= 3.7) | 3.71 | 3.69 | |" in text
    assert "| default run, both tasks, wall | 30 s | 20 s | 1.5 |" in text


def test_train_summary_reads_the_trainers_result_json(tmp_path):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"classify": {"accuracy": 81.5, "config": {"precision": "float32"}},
                               "lm": {"perplexity": 3.65, "config": {"precision": "float32"}}}))
    s = gc.train_summary(out, 12.0)
    assert s["quality_met"] and s["precision"] == "float32" and s["tasks"]["lm"]["perplexity"] == 3.65
    assert gc.train_summary(tmp_path / "none.json", 1.0)["quality_met"] is False
