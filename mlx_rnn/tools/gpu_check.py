"""The one-command GPU check: ``make gpu-check`` / ``python scripts/gpu_check.py``.

On a machine with a GPU (MLX's CUDA or Metal back end, and PyTorch's CUDA or MPS), in this order,
each step in its own process (so no step holds another's GPU memory or compiled kernels):

1. ``tests``: every test that needs an accelerator (``pytest -m gpu``: the parity suite on the
   GPU device pairs, tests/conftest.py), counted from pytest's JUnit XML;
2. ``bench``: ``scripts/benchmark.py --quick`` on the GPU for MLX and PyTorch (the three
   standard configurations), its MLX / PyTorch median epoch ratios;
3. ``train``: one default run of each trainer on the GPU (``train_mlx.py --device gpu``,
   ``train_torch.py --device cuda|mps``, both tasks), its quality against the project's bars
   (:data:`mlx_rnn.core.metrics.QUALITY_BARS`) and wall time.

Prints one summary table (Markdown) and writes ``results/gpu-check-<date>.json`` (device name,
versions, precision, pass/fail counts, ratios, quality, wall times; ``--output-json`` elsewhere);
the steps' own logs and checkpoints go to ``runs/gpu-check-<date>-<time>/``. Everything runs at
the default precision, full float32 (mlx_rnn.core.precision). Without a GPU it says so in one
line and exits 2; a failed test, a step that failed or a quality bar missed exits 1.
"""

from __future__ import annotations

import argparse
from datetime import datetime
import json
import os
from pathlib import Path
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from mlx_rnn.run.flags import OneLineParser, prog_name
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, data_dir_complete, resolve_data_dir
from mlx_rnn.core.metrics import QUALITY_BARS, meets_bar

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("tests", "bench", "train")
EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 1, 2


class NoGPU(RuntimeError):
    """Neither framework (or only one) can reach a GPU here."""


def find_gpus() -> dict:
    """``{"mlx": "gpu", "torch": "cuda" or "mps", "name": ..., "versions": {...}}`` for this machine.

    Raises:
        NoGPU: MLX has no GPU back end, or PyTorch sees no CUDA or MPS device (one line saying which).
    """
    import mlx.core as mx
    import torch

    mlx_gpu = mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available())
    torch_gpu = "cuda" if torch.cuda.is_available() else \
        "mps" if hasattr(torch.backends, "mps") and torch.backends.mps.is_available() else None
    if not mlx_gpu and torch_gpu is None:
        raise NoGPU("no GPU here: MLX has no GPU back end (Metal or CUDA) and PyTorch sees no CUDA or MPS device")
    if not mlx_gpu:
        raise NoGPU(f"PyTorch sees {torch_gpu} but this MLX build has no GPU back end: on Linux install MLX's "
                    "CUDA build (make setup BACKEND=cuda13, or cuda12)")
    if torch_gpu is None:
        raise NoGPU("MLX has a GPU but this PyTorch build sees no CUDA or MPS device (a CPU build?)")
    name = torch.cuda.get_device_name(0) if torch_gpu == "cuda" else "Apple GPU (Metal / MPS)"
    versions = {"python": sys.version.split()[0], "mlx": mx.__version__, "torch": torch.__version__,
                "cuda": torch.version.cuda, "mlx_rnn_commit": _git_commit()}
    return {"mlx": "gpu", "torch": torch_gpu, "name": name, "versions": versions}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_step(cmd: list[str], log: Path, timeout: float) -> tuple[int, float]:
    """Run ``cmd`` from the repository root, stdout and stderr to ``log``; (exit code, wall seconds).
    A step past ``timeout`` seconds is killed and reported as exit code 124."""
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - t0


def junit_counts(path: Path) -> dict:
    """``{"tests", "passed", "failed", "errors", "skipped"}`` from a pytest JUnit XML file (all zero
    when the file is missing or unreadable: the step failed before pytest wrote it)."""
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return dict(counts, passed=0)
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for key, attr in (("tests", "tests"), ("failed", "failures"), ("errors", "errors"), ("skipped", "skipped")):
            counts[key] += int(suite.get(attr, 0))
    counts["passed"] = counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"]
    return counts


def bench_summary(path: Path) -> dict:
    """Median epoch times and MLX / PyTorch ratios per configuration from ``benchmark.py``'s JSON."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    rows = {}
    for r in report.get("results", []):
        rows.setdefault(r["config"], {})[r["framework"]] = r["median_epoch_s"]
    return {"median_epoch_s": rows, "ratios": report.get("ratios", {}),
            "effective_fraction_of_sgemm": {f"{r['config']}/{r['framework']}": r.get("effective_fraction_of_sgemm")
                                            for r in report.get("results", [])}}


def train_summary(path: Path, wall_s: float) -> dict:
    """Quality (the figure each bar names, and whether it is met) and times of one trainer's result JSON."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"wall_s": wall_s, "quality_met": False}
    out = {"wall_s": wall_s, "precision": None, "tasks": {}}
    for task, (key, _, _) in QUALITY_BARS.items():
        b = result.get(task, {})
        out["precision"] = out["precision"] or b.get("config", {}).get("precision")
        out["tasks"][task] = {key: b.get(key), "meets_bar": meets_bar(task, b.get(key)),
                              "train_time_s": b.get("train_time_s"), "total_time_s": b.get("total_time_s")}
    out["quality_met"] = all(t["meets_bar"] for t in out["tasks"].values())
    return out


def check(gpus: dict, steps: list[str], logs: Path, timeout: float) -> dict:
    """Run ``steps`` (of :data:`STEPS`) on the devices of ``gpus`` (:func:`find_gpus`), logs in ``logs``;
    the report :func:`main` writes (``"passed"``: :func:`_passed`)."""
    py, env_data = sys.executable, os.environ.get("MLX_RNN_DATA")
    report = {"date": datetime.now().isoformat(timespec="seconds"), "device": gpus["name"],
              "devices": {"mlx": gpus["mlx"], "torch": gpus["torch"]}, "versions": gpus["versions"],
              "data": env_data, "logs": str(logs), "steps": steps}
    if "tests" in steps:
        xml = logs / "gpu-tests.xml"
        rc, wall = run_step([py, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
                             f"--junitxml={xml}", "tests"], logs / "gpu-tests.log", timeout)
        report["tests"] = dict(junit_counts(xml), exit_code=rc, wall_s=wall)
    if "bench" in steps:
        out = logs / "bench-quick.json"
        rc, wall = run_step([py, "scripts/benchmark.py", "--quick", "--frameworks", "mlx,torch", "--device-mlx", gpus["mlx"],
                             "--device-torch", gpus["torch"], "--output-json", str(out)], logs / "bench-quick.log", timeout)
        report["bench"] = dict(bench_summary(out), exit_code=rc, wall_s=wall)
    if "train" in steps:
        report["train"] = {}
        for fw, script, device in (("mlx", "train_mlx.py", gpus["mlx"]), ("torch", "train_torch.py", gpus["torch"])):
            out = logs / f"default-{fw}.json"
            rc, wall = run_step([py, f"scripts/{script}", "--device", device, "--save", str(logs / f"default-{fw}"),
                                 "--output-json", str(out)], logs / f"default-{fw}.log", timeout)
            report["train"][fw] = dict(train_summary(out, wall), exit_code=rc)
        walls = [report["train"][fw]["wall_s"] for fw in ("mlx", "torch")]
        report["train"]["wall_ratio"] = walls[0] / walls[1] if walls[1] > 0 else None
    report["passed"] = _passed(report)
    return report


def _passed(report: dict) -> bool:
    """Every step that ran succeeded: no failed or erroring GPU test (and at least one ran), the
    benchmark finished, both default runs finished and met the quality bars."""
    ok = True
    if "tests" in report:
        t = report["tests"]
        ok &= t["exit_code"] == 0 and t["failed"] == t["errors"] == 0 and t["passed"] > 0
    if "bench" in report:
        ok &= report["bench"]["exit_code"] == 0
    if "train" in report:
        ok &= all(report["train"][fw]["exit_code"] == 0 and report["train"][fw]["quality_met"] for fw in ("mlx", "torch"))
    return bool(ok)


def _fmt(x, unit: str = "", digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}{unit}"


def summary_table(report: dict) -> str:
    """The check as one Markdown table: tests, benchmark ratios, default runs (quality, wall time)."""
    lines = [f"GPU check on {report['device']} (MLX {report['versions']['mlx']} on {report['devices']['mlx']}, "
             f"PyTorch {report['versions']['torch']} on {report['devices']['torch']}): "
             f"{'PASSED' if report['passed'] else 'FAILED'}", "",
             "| check | MLX | PyTorch | MLX / PyTorch |", "| --- | --: | --: | --: |"]
    if "tests" in report:
        t = report["tests"]
        lines.append(f"| GPU tests (pytest -m gpu, {t['wall_s']:.0f} s) | {t['passed']} passed, {t['failed']} failed, "
                     f"{t['errors']} errors, {t['skipped']} skipped | | |")
    if "bench" in report:
        b = report["bench"]
        for config, times in b.get("median_epoch_s", {}).items():
            lines.append(f"| {config} epoch (--quick, median) | {_fmt(times.get('mlx'), ' s')} | "
                         f"{_fmt(times.get('torch'), ' s')} | {_fmt(b['ratios'].get(config))} |")
        if b["exit_code"] != 0:
            lines.append(f"| benchmark | failed (exit {b['exit_code']}) | | |")
    if "train" in report:
        tr = report["train"]
        for task, (key, op, bar) in QUALITY_BARS.items():
            cells = [_fmt(tr[fw].get("tasks", {}).get(task, {}).get(key), digits=4) for fw in ("mlx", "torch")]
            lines.append(f"| default run, {task} {key} (bar {op} {bar}) | {cells[0]} | {cells[1]} | |")
        lines.append(f"| default run, both tasks, wall | {tr['mlx']['wall_s']:.0f} s | {tr['torch']['wall_s']:.0f} s "
                     f"| {_fmt(tr['wall_ratio'])} |")
        for fw in ("mlx", "torch"):
            if tr[fw]["exit_code"] != 0:
                lines.append(f"| default run, {fw} | failed (exit {tr[fw]['exit_code']}) | | |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog_name("gpu_check.py"),
        description=("Check this project on a GPU in one command: the GPU tests (pytest -m gpu), the benchmark's "
                     "default configurations (--quick) for MLX and PyTorch, and one default run of each trainer; "
                     "prints a summary table and writes results/gpu-check-DATE.json. Everything at full float32."),
        epilog="Exit codes: 0 every check passed, 1 a check failed, 2 no GPU here or bad usage.")
    p.add_argument("--steps", default=",".join(STEPS),
                   help=f"comma-separated steps to run, of {', '.join(STEPS)} (default: all)")
    p.add_argument("--output-json", metavar="PATH",
                   help="write the report here (default results/gpu-check-DATE.json; never overwrites: -2, -3 ...)")
    p.add_argument("--step-timeout", type=float, default=600.0, metavar="SECONDS",
                   help="end a step that runs longer than this (default 600)")
    return p


def _default_output() -> Path:
    base = ROOT / "results" / f"gpu-check-{datetime.now():%Y-%m-%d}"
    path, n = base.with_suffix(".json"), 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}.json")
    return path


def main(argv=None) -> int:
    """Entry point of ``scripts/gpu_check.py``; returns the exit code."""
    args = build_parser().parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    if not steps or any(s not in STEPS for s in steps):
        print(f"error: --steps {args.steps!r}: choose from {', '.join(STEPS)} (comma-separated)", file=sys.stderr)
        return EXIT_NO_GPU
    try:
        import mlx_rnn.device  # noqa: F401  (the precision policy before MLX's first operation)

        gpus = find_gpus()
    except NoGPU as e:
        print(f"gpu-check: {e}", file=sys.stderr)
        return EXIT_NO_GPU
    except ImportError as e:
        print(f"gpu-check: {e} (install the project with make setup)", file=sys.stderr)
        return EXIT_NO_GPU
    if set(steps) & {"bench", "train"}:
        data_dir = resolve_data_dir(None)
        if not data_dir_complete(data_dir, sorted(set(CLASSIFY_FILES.values()) | set(LM_FILES.values()))):
            print(f"gpu-check: the text8 data files are not in {data_dir} (set MLX_RNN_DATA to their folder; "
                  "the benchmark and the default runs need them)", file=sys.stderr)
            return EXIT_NO_GPU
    logs = ROOT / "runs" / f"gpu-check-{datetime.now():%Y%m%d-%H%M%S}"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"gpu-check: {gpus['name']}; steps {', '.join(steps)}; logs in {logs}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    report = check(gpus, steps, logs, args.step_timeout)
    report["wall_s"] = time.perf_counter() - t0
    out = Path(args.output_json) if args.output_json else _default_output()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(summary_table(report))
    print(f"\nreport: {out} (whole check {report['wall_s']:.0f} s)")
    return EXIT_OK if report["passed"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
