"""scripts/benchmark.py: a tiny quick run of both frameworks, its JSON, Markdown table and plot."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the repository
SCRIPT = ROOT / "scripts" / "benchmark.py"

RESULT_KEYS = {"config", "settings", "framework", "device", "timing", "median_epoch_s", "min_epoch_s",
               "max_epoch_s", "steps_per_s", "chars_per_s", "peak_memory_bytes", "peak_memory_source",
               "peak_rss_bytes", "sgemm_gflops", "effective_gflops", "steps_per_epoch", "epoch_times_s"}
SETTINGS = {"task": None, "embed_dim": 8, "hidden_size": 16, "num_layers": 1, "batch_size": 8, "seq_len": 10}


def _has(mod: str) -> bool:
    return importlib.util.find_spec(mod) is not None


def _packed_kernels() -> bool:
    """Whether the native packed kernels (and so the FMA peak probe) run on this CPU."""
    from mlx_rnn import native

    return native.available() and native.ext().packed_gemm_available()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not (_has("mlx") and _has("torch") and _has("matplotlib")):
        pytest.skip("needs mlx, torch and matplotlib")
    tmp = tmp_path_factory.mktemp("bench")
    out, png = tmp / "bench.json", tmp / "bench.png"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--synthetic", "--repeats", "1", "--frameworks", "mlx,mlx-op,torch",
           "--configs", "classify,lm",
           "--embed-dim", "8", "--hidden-size", "16", "--num-layers", "1", "--batch-size", "8", "--seq-len", "10",
           "--quick-batches", "3", "--warmup-batches", "1", "--sgemm-n", "128", "--wait-quiet", "1",
           "--output-json", str(out), "--plot", str(png)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text()), png


def test_json_schema(quick_run):
    _, report, _ = quick_run
    assert set(report) >= {"environment", "results", "ratios", "mode"}
    assert report["mode"] == "quick"
    env = report["environment"]
    assert {"os", "cpu_model", "thread_env", "frameworks"} <= set(env)
    assert set(env["frameworks"]) == {"mlx", "mlx-op", "torch"}
    for fe in env["frameworks"].values():
        assert fe["version"] and fe["device"] and fe["blas"] and fe["sgemm_gflops"] > 0
    fma = {r["framework"]: r["fma_peak_gflops"] for r in report["results"]}
    assert fma["torch"] is None  # measured by the MLX workers only
    if _packed_kernels():
        assert fma["mlx"] > 0 and env["fma_peak_gflops"] == max(r["fma_peak_gflops"] or 0 for r in report["results"])
    results = report["results"]
    assert {(r["config"], r["framework"]) for r in results} == {(c, f) for c in ("classify", "lm")
                                                                for f in ("mlx", "mlx-op", "torch")}
    for r in results:
        assert RESULT_KEYS <= set(r), RESULT_KEYS - set(r)
        assert r["settings"] == dict(SETTINGS, task=r["config"])
        assert r["data"] == "synthetic" and r["timing"].startswith("quick: 3 batches")
        assert 0 < r["min_epoch_s"] <= r["median_epoch_s"] <= r["max_epoch_s"]
        assert r["steps_per_s"] == pytest.approx(r["steps_per_epoch"] / r["median_epoch_s"])
        assert r["chars_per_s"] == pytest.approx(r["steps_per_s"] * 8 * 10)
        assert r["peak_memory_bytes"] > 0 and r["peak_rss_bytes"] > 0 and r["effective_gflops"] > 0


def test_ratios_from_medians(quick_run):
    _, report, _ = quick_run
    med = {(r["config"], r["framework"]): r["median_epoch_s"] for r in report["results"]}
    assert set(report["ratios"]) == {"classify", "lm"}
    for name, ratio in report["ratios"].items():
        assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0
        assert ratio == pytest.approx(med[(name, "mlx")] / med[(name, "torch")])
    assert set(report["ratios_min"]) == set(report["ratios_paired"]) == {"classify", "lm"}
    assert all(v > 0 for v in [*report["ratios_min"].values(), *report["ratios_paired"].values()])
    for name in ("classify", "lm"):
        assert report["ratios_op"][name] == pytest.approx(med[(name, "mlx-op")] / med[(name, "torch")])
        assert report["ratios_native_vs_op"][name] == pytest.approx(med[(name, "mlx")] / med[(name, "mlx-op")])


def test_the_run_is_judged_and_the_markdown_says_what_the_json_says(quick_run):
    """Whatever this machine's load did to the tiny run, the JSON marks it and the report agrees."""
    proc, report, _ = quick_run
    trust = report["trust"]
    assert report["trustworthy"] is trust["trustworthy"] and isinstance(report["trustworthy"], bool)
    assert trust["trustworthy"] == (not trust["reasons"])
    assert {w["name"] for w in trust["load"]["windows"]} >= {"classify", "lm", "whole run"}
    assert trust["wait_quiet"]["limit_s"] == 1 and isinstance(trust["wait_quiet"]["quiet"], bool)
    assert "--wait-quiet 1" in proc.stdout
    if set(trust["disturbed"]) & {"classify", "lm"}:
        assert "**Not to be trusted: this run was disturbed**" in proc.stdout and "x faster" not in proc.stdout
        assert all(reason in proc.stdout for reason in trust["reasons"])
    else:  # (no sweep ran: nothing else can be disturbed)
        assert trust["trustworthy"] and "Judged undisturbed" in proc.stdout


def test_the_recurrence_path_is_reported(quick_run):
    from mlx_rnn import native

    proc, report, _ = quick_run
    by_fw = {r["framework"]: r for r in report["results"] if r["config"] == "lm"}
    assert by_fw["mlx-op"]["recurrence"] == "op (MLX_RNN_LSTM_IMPL=op)" and by_fw["mlx-op"]["fused_adamw"] is False
    if native.available():
        assert by_fw["mlx"]["recurrence"].startswith("native") and by_fw["mlx"]["fused_adamw"] is True
    assert "MLX recurrence path:" in proc.stdout


def test_markdown_table_and_plot(quick_run):
    proc, report, png = quick_run
    out = proc.stdout
    assert "| config | sizes | framework |" in out and "|---|" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| classify |") or ln.startswith("| lm |")]
    assert len(rows) == 6
    assert "Ratio MLX / PyTorch" in out and "synchronised" in out and "synthetic" in out
    assert "GFLOP/s effective" in out
    lm = {r["framework"]: r for r in report["results"] if r["config"] == "lm"}
    floor = lm["torch"]["effective_gflops"] / lm["mlx"]["sgemm_gflops"]
    assert f"nothing else: MLX / PyTorch {floor:.2f}" in out
    if _packed_kernels():
        fma = report["environment"]["fma_peak_gflops"]
        assert f"{fma:.1f} GFLOP/s; the measured sgemm reaches MLX " in out
        assert f"at the CPU's FMA peak ({fma:.1f} GFLOP/s, which no BLAS reaches): MLX / PyTorch " \
               f"{lm['torch']['effective_gflops'] / fma:.2f}" in out
        assert f"{100 * lm['mlx']['effective_gflops'] / fma:.0f}% of the CPU's FMA peak" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flop_count():
    from mlx_rnn.tools.bench.rows import matmul_flops_per_step

    B, T, E, H, V = 32, 100, 64, 512, 27
    expected = 3 * (2 * B * T * E * 4 * H + 2 * B * T * H * 4 * H      # layer 0
                    + 2 * B * T * H * 4 * H + 2 * B * T * H * 4 * H    # layer 1
                    + 2 * B * T * H * V)                               # output layer
    assert matmul_flops_per_step("lm", E, H, 2, B, T, V) == expected
    assert matmul_flops_per_step("classify", 32, 128, 1, 64, 20) == 3 * (2 * 64 * 20 * 32 * 512
                                                                        + 2 * 64 * 20 * 128 * 512 + 2 * 64 * 128)


def test_bad_usage_is_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--configs", "nope"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1


def test_markdown_includes_scaling_rows():
    from mlx_rnn.tools.bench.benchmark import machine_environment
    from mlx_rnn.tools.bench.report import format_markdown

    env = dict(machine_environment(), frameworks={})
    report = {"environment": env, "mode": "quick", "repeats": 1, "results": [], "ratios": {}, "notes": [],
              "wall_time_s": 1.0,
              "scaling": [{"framework": "mlx", "ranks": 1, "chars_per_s": 1000.0, "efficiency": 1.0},
                          {"framework": "mlx", "ranks": 2, "chars_per_s": 1500.0, "efficiency": 0.75}],
              "scaling_details": {"mlx": {"note": "weak scaling"}}}
    text = format_markdown(report)
    assert "| MLX | 2 | 1,500 | 0.75 |" in text


def test_sweep_points_and_markdown(tmp_path):
    """The sweep varies one size at a time around each task's defaults; its table and plot."""
    pytest.importorskip("matplotlib")
    from mlx_rnn.tools.bench.sweep import HIDDEN_SIZES, SEQ_LENS, sweep_markdown, sweep_points, write_sweep_plot
    from mlx_rnn.tools.bench.names import STANDARD_CONFIGS

    pts = sweep_points(STANDARD_CONFIGS)
    assert len(pts) == 2 * (len(HIDDEN_SIZES) + len(SEQ_LENS))
    for task, vary, value, settings in pts:
        assert settings[vary] == value
        others = {k: v for k, v in settings.items() if k != vary}
        assert others == {k: v for k, v in STANDARD_CONFIGS[task].items() if k != vary}
    rows = [{"task": t, "vary": v, "value": x, "settings": s, "mlx_step_s": 0.01 * x / 100,
             "torch_step_s": 0.02 * x / 100, "ratio": 0.5} for t, v, x, s in pts]
    text = "\n".join(sweep_markdown(rows))
    assert "| lm | hidden_size | 1024 | 102.40 | 204.80 | 0.50 |" in text
    png = tmp_path / "sweep.png"
    write_sweep_plot(rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_plot_needs_sweep():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sweep-plot", "x.png"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "--sweep-plot needs --sweep" in proc.stderr


def test_the_switches_set_are_in_the_json_and_a_bad_one_stops_it_first(monkeypatch):
    """``"switches"``: the MLX_RNN_* switches not at their default; a bad one: exit 2, one line,
    before anything is timed."""
    from mlx_rnn.core import switches
    from mlx_rnn.tools.bench.benchmark import build_parser, run_benchmark

    args = build_parser().parse_args(["--quick"])
    args.configs = []  # (nothing timed: the environment and the switches only)
    monkeypatch.setenv("MLX_RNN_PACKED", "0")
    report = run_benchmark(args)
    assert report["switches"] == switches.read().non_default() and report["switches"]["MLX_RNN_PACKED"] == "0"
    env = dict(os.environ, MLX_RNN_LAYERS="fast")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--configs", "classify"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: MLX_RNN_LAYERS='fast': expected auto or mlx"], proc.stderr
