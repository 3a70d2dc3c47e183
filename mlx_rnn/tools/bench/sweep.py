"""``benchmark.py --sweep``: how the cost of a training step grows with the work, MLX against PyTorch.

Around each task's default configuration, one size varies at a time: the hidden size H over
128-1024 (the other sizes at the defaults) and the sequence length T over 20-200. Every
point is timed as the benchmark times a configuration (:func:`mlx_rnn.tools.bench.driver.time_config`:
one worker process per framework, warm-up not timed, repeats alternating, synchronised
timers), on synthetic data of the same shape (the real classification windows are 20
characters long). Reported per point: median time per training step of MLX (the default
path: the native primitives on the CPU) and PyTorch, and their ratio.
"""

from __future__ import annotations

from dataclasses import replace
import statistics

from .driver import Timing, time_config
from .names import STANDARD_CONFIGS

HIDDEN_SIZES = (128, 256, 512, 1024)
SEQ_LENS = (20, 50, 100, 200)
SWEEP_FRAMEWORKS = ("mlx", "torch")
#: Timed and warm-up batches per repeat (per point; the LM's largest points take about a second a batch).
SWEEP_BATCHES = {"classify": 10, "lm": 3}
SWEEP_WARMUP = {"classify": 3, "lm": 2}


def sweep_points(standard: dict) -> list[tuple[str, str, int, dict]]:
    """[(task, varied size, value, settings)] for both tasks."""
    points = []
    for task in ("classify", "lm"):
        base = dict(standard[task])
        for vary, values in (("hidden_size", HIDDEN_SIZES), ("seq_len", SEQ_LENS)):
            for v in values:
                points.append((task, vary, v, dict(base, **{vary: v})))
    return points


def run_sweep(timing: Timing, log) -> list[dict]:
    """Time every sweep point for MLX and PyTorch (repeats, devices, threads as ``timing`` says;
    synthetic data, the sweep's own batch counts); one row per point, with its timed phase's
    ``timed_window`` (other processes' CPU use, :mod:`mlx_rnn.tools.bench.trust`)."""
    rows = []
    for task, vary, value, settings in sweep_points(STANDARD_CONFIGS):
        name = f"{task} {vary}={value}"
        point = replace(timing, synthetic=True, batches=SWEEP_BATCHES[task], warmup_batches=SWEEP_WARMUP[task])
        ready, runs, _, timed = time_config(name, settings, SWEEP_FRAMEWORKS, point, log)
        step = {fw: statistics.median(m["time_s"] / m["steps"] for m in runs[fw]) for fw in SWEEP_FRAMEWORKS}
        chars = settings["batch_size"] * settings["seq_len"]
        rows.append({"task": task, "vary": vary, "value": value, "settings": settings,
                     "mlx_step_s": step["mlx"], "torch_step_s": step["torch"],
                     "ratio": step["mlx"] / step["torch"],
                     "mlx_chars_per_s": chars / step["mlx"], "torch_chars_per_s": chars / step["torch"],
                     "mlx_recurrence": ready["mlx"]["backend"].get("recurrence"),
                     "timed_window": dict(timed, name=f"sweep {name}", sections=["sweep"])})
    return rows


def sweep_markdown(rows: list[dict]) -> list[str]:
    lines = ["Sweep: median time per training step, MLX (default path) vs PyTorch, one size varied at a time "
             "around each task's defaults (synthetic data):", "",
             "| task | varied | value | MLX ms/step | PyTorch ms/step | MLX / PyTorch |", "|---|---|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['vary']} | {r['value']} | {1e3 * r['mlx_step_s']:.2f} "
                     f"| {1e3 * r['torch_step_s']:.2f} | {r['ratio']:.2f} |")
    return lines + [""]


def write_sweep_plot(rows: list[dict], path, title: str = "") -> None:
    """2 x 2 panels (task x varied size): ms per step of both frameworks, ratio in the labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9.5, 7.0), squeeze=False)
    for i, task in enumerate(("classify", "lm")):
        for j, vary in enumerate(("hidden_size", "seq_len")):
            ax = axes[i][j]
            pts = [r for r in rows if r["task"] == task and r["vary"] == vary]
            if not pts:
                ax.set_visible(False)
                continue
            xs = [r["value"] for r in pts]
            ax.plot(xs, [1e3 * r["mlx_step_s"] for r in pts], "o-", color="#1f77b4", label="MLX (native)")
            ax.plot(xs, [1e3 * r["torch_step_s"] for r in pts], "s-", color="#ee4c2c", label="PyTorch")
            for r in pts:
                ax.annotate(f"{r['ratio']:.2f}", (r["value"], 1e3 * r["mlx_step_s"]), textcoords="offset points",
                            xytext=(0, -13), ha="center", fontsize=7, color="#1f77b4")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(xs)
            ax.set_xticklabels([str(x) for x in xs])
            ax.set_xlabel("hidden size H" if vary == "hidden_size" else "sequence length T")
            ax.set_ylabel("ms per training step")
            ax.set_title(f"{task}: {vary} varied (labels: MLX / PyTorch)", fontsize=9)
            ax.legend(fontsize=8)
    fig.suptitle(title or "Training step time vs work", fontsize=10)
    fig.tight_layout()
    from mlx_rnn.core.outputs import save_figure

    try:
        save_figure(fig, path, "benchmark sweep (mlx_rnn.tools.bench.sweep)")
    finally:
        plt.close(fig)
