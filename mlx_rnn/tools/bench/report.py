"""The benchmark's report: the Markdown tables and notes, and the bar chart (``--plot``).

Reads the report dict that :func:`mlx_rnn.tools.bench.benchmark.run_benchmark` returns; no
framework is imported.
"""

from __future__ import annotations

from mlx_rnn.core.outputs import save_figure

from .names import FRAMEWORK_NAMES


def scoring_markdown(report: dict) -> list[str]:
    from .scoring import format_scoring

    text = format_scoring(report.get("scoring_rows", []))
    return ["", text] if text else []


# ---------------------------------------------------------------------------------------------
def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.0f} MiB"


def _mem_tag(source: str) -> str:
    if source.startswith("mx."):
        return "MLX alloc"
    if "RSS" in source:
        return "RSS"
    return source.split(" ")[0]


def _sig(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _sizes(s: dict) -> str:
    return f"E={s['embed_dim']} H={s['hidden_size']} L={s['num_layers']} B={s['batch_size']} T={s['seq_len']}"


def ratios_disturbed(report: dict) -> bool:
    """Whether the judgement of the run (:mod:`mlx_rnn.tools.bench.trust`) found a configuration
    disturbed, so that its ratios are not a result (False for reports from before the judgement)."""
    trust = report.get("trust") or {}
    return any(name in trust.get("disturbed", ()) for name in dict.fromkeys(r["config"] for r in report["results"]))


def _ratio_lines(report: dict) -> list[str]:
    disturbed = ratios_disturbed(report)

    def fmt(v):
        if disturbed:  # no "MLX 4x faster" beside a figure that is not a result
            return f"{v:.2f}"
        return f"{v:.2f}" + (f" (MLX {1 / v:.2f}x faster)" if v < 1 else f" (PyTorch {v:.2f}x faster)")

    tag = "Disturbed run, not a result: " if disturbed else ""
    lines = []
    if report["ratios"]:
        lines.append(f"{tag}Ratio MLX / PyTorch (median epoch time): "
                     + ", ".join(f"{k} {fmt(v)}" for k, v in report["ratios"].items()))
        if report.get("ratios_min"):
            lines.append("Also: fastest repeat / fastest repeat: " + ", ".join(
                f"{k} {v:.2f}" for k, v in report["ratios_min"].items())
                + "; median of per-repeat pairs (A/B): " + ", ".join(
                f"{k} {v:.2f}" for k, v in report.get("ratios_paired", {}).items())
                + ". When these disagree with the median ratio, the machine's load changed during the run.")
    if report.get("ratios_op"):
        lines.append(f"{tag}Ratio MLX op (Python-level op, mlx.optimizers AdamW) / PyTorch: "
                     + ", ".join(f"{k} {fmt(v)}" for k, v in report["ratios_op"].items()))
    if report.get("ratios_native_vs_op"):
        lines.append(f"{tag}Speed-up of the default MLX path over the op (MLX / MLX op): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in report["ratios_native_vs_op"].items()))
    recs = {r["framework"]: r.get("recurrence") for r in report["results"] if r.get("recurrence")}
    if recs:
        lines.append("MLX recurrence path: " + "; ".join(f"{FRAMEWORK_NAMES[k]}: {v}" for k, v in recs.items()))
    return lines + ([""] if lines else [])


def trust_lines(report: dict) -> list[str]:
    """The judgement of the run, before the ratios: a disturbed run's reasons and what to do,
    or the figures that found it undisturbed."""
    trust = report.get("trust")
    if not trust:
        return []
    lines = []
    wait = trust.get("wait_quiet")
    if wait:
        other = "unmeasured" if wait["other_cpus"] is None else f"{wait['other_cpus']:.2f} CPUs"
        lines.append(f"Waited {wait['waited_s']:.0f} s (--wait-quiet {wait['limit_s']:.0f}) for a quiet machine: "
                     + ("quiet" if wait["quiet"] else "still busy") + f" (other processes: {other}).")
    if not trust["trustworthy"]:
        what = ("its MLX / PyTorch ratios are not a result" if ratios_disturbed(report)
                else "the sections named below are not a result")
        lines += [f"**Not to be trusted: this run was disturbed**, so {what}: other work on the machine "
                  "slows code that runs thread pools (PyTorch's OpenMP, OpenBLAS, the native LSTM's team) the "
                  "most, which moves the ratios in either direction."]
        lines += [f"- {reason}" for reason in trust["reasons"]]
        lines.append(trust["advice"])
    else:
        lines.append("Judged undisturbed: " + _undisturbed_figures(trust) + ".")
    lines += [f"Note: {note}" for note in trust.get("notes", [])]
    return lines + [""]


def _undisturbed_figures(trust: dict) -> str:
    judged = [w["other_cpus"] for w in trust["load"]["windows"] if w.get("judged")]
    spreads = [v for per in trust["spread"].values() for v in per.values() if v is not None]
    pairs = [v for per in trust["pairs"].values() for v in per.values() if v is not None]
    lim = trust["limits"]
    parts = [f"other processes used at most {max(judged):.2f} CPUs while it timed (limit {lim['other_cpus']:.2f})"
             if judged else "other processes' CPU use not measured"]
    if spreads:
        parts.append(f"slowest / fastest repeat at most {max(spreads):.2f} (limit {lim['spread']})")
    if pairs:
        parts.append(f"per-round ratios at most {max(pairs):.2f}x apart (limit {lim['pairs']})")
    return "; ".join(parts)


def _flop_lines(report: dict) -> list[str]:
    lines = []
    for name in dict.fromkeys(r["config"] for r in report["results"] if r["settings"]["task"] == "lm"):
        lm = [r for r in report["results"] if r["config"] == name]
        lines.append(f"Effective matmul FLOP rate, {name} ({_sig(lm[0]['matmul_gflop_per_step'])} GFLOP per step, "
                     "forward + backward):")
        fma = report["environment"].get("fma_peak_gflops")
        for r in lm:
            frac = r["effective_fraction_of_sgemm"]
            shares = ([f"{100 * frac:.0f}% of peak"] if frac is not None else []) + (
                [f"{100 * r['effective_gflops'] / fma:.0f}% of the CPU's FMA peak"] if fma else [])
            lines.append(f"- {FRAMEWORK_NAMES[r['framework']]}: {r['effective_gflops']:.1f} GFLOP/s effective vs "
                         f"{r['sgemm_gflops']:.1f} GFLOP/s measured sgemm peak"
                         + (f" ({'; '.join(shares)})" if shares else ""))
        floor = _matmul_floor(lm)
        if floor is not None:
            lines.append(f"- MLX with every matmul at its measured sgemm peak and nothing else: MLX / PyTorch {floor:.2f} "
                         "(the lowest ratio these matmuls allow on this machine)")
        torch_rate = next((r["effective_gflops"] for r in lm if r["framework"] == "torch"), None)
        if fma and torch_rate:
            lines.append(f"- MLX with every matmul at the CPU's FMA peak ({fma:.1f} GFLOP/s, which no BLAS reaches): "
                         f"MLX / PyTorch {torch_rate / fma:.2f}")
        lines.append("")
    return lines


def _matmul_floor(rows: list) -> float | None:
    """PyTorch's effective matmul rate / MLX's measured sgemm peak: the MLX / PyTorch time ratio of an
    MLX that ran every matrix product of the step at its sgemm peak and spent no time on anything
    else (the same FLOPs in both). None without both rows or a peak."""
    by_fw = {r["framework"]: r for r in rows}
    mlx, torch = by_fw.get("mlx"), by_fw.get("torch")
    if not (mlx and torch and mlx["sgemm_gflops"]):
        return None
    return torch["effective_gflops"] / mlx["sgemm_gflops"]


def format_markdown(report: dict) -> str:
    """The whole report as Markdown: heading, environment, results table, ratios, FLOP rates,
    what the figures mean, then the sweep, scaling and scoring sections that ran."""
    lines = [f"## MLX vs PyTorch training benchmark ({report['mode']}: "
             + ("fixed batches per repeat, scaled to an epoch" if report["mode"] == "quick" else "whole epochs")
             + f", {report['repeats']} repeat{'s' if report['repeats'] != 1 else ''} per framework, alternating)",
             "", "Environment:", ""]
    lines += _environment_lines(report)
    lines += [""] + _results_table(report) + [""]
    lines += trust_lines(report)
    lines += _ratio_lines(report)
    lines += _flop_lines(report)
    lines += [_meaning(report), "", f"Wall time: {report['wall_time_s']:.1f} s."]
    if report.get("sweep"):
        from .sweep import sweep_markdown

        lines += [""] + sweep_markdown(report["sweep"])
        if "sweep" in (report.get("trust") or {}).get("disturbed", ()):
            lines += ["**Not to be trusted**: other processes used the CPUs while the sweep timed (the reasons "
                      "above); its ratios are not a result.", ""]
    if report.get("scaling"):
        lines += _scaling_lines(report)
    lines += scoring_markdown(report)
    return "\n".join(lines)


def _environment_lines(report: dict) -> list[str]:
    """The environment list: OS, CPU and load, each framework's device, threads, BLAS and sgemm rate,
    thread variables, data, notes."""
    env = report["environment"]
    cpu = f"{env['cpu_model']} ({env['cpu_count']} logical CPUs" + (
        f", {env['cpus_usable']} usable" if env.get("cpus_usable") not in (None, env["cpu_count"]) else "") + ")"
    load = ""
    if env.get("load_average_start"):
        load = (f"; load average {env['load_average_start'][0]:.1f} at start, "
                f"{env.get('load_average_end', [float('nan')])[0]:.1f} at end (1 min)")
    lines = [f"- OS: {env['os']}, Python {env['python']}; CPU: {cpu}{load}"]
    for fw, fe in env.get("frameworks", {}).items():
        dev = fe["device"] + (f" ({fe['device_name']})" if fe.get("device_name") and fe["device"] != "cpu" else "")
        threads = f"; {fe['threads']} intra-op / {fe['interop_threads']} inter-op threads" if fe.get("threads") else ""
        blas = fe["blas"] if fe["blas"].startswith("MLX BLAS") else f"BLAS: {fe['blas']}"
        precision = f"; {fe['describe_precision']}" if fe.get("describe_precision") else ""
        lines.append(f"- {FRAMEWORK_NAMES[fw]} {fe['version']} on {dev}{precision}{threads}; {blas}; measured fp32 "
                     f"sgemm ({fe['sgemm_n']}^3): {fe['sgemm_gflops']:.1f} GFLOP/s")

    fma = env.get("fma_peak_gflops")
    if fma:
        reach = ", ".join(f"{FRAMEWORK_NAMES[fw]} {100 * fe['sgemm_gflops'] / fma:.0f}%"
                          for fw, fe in env.get("frameworks", {}).items() if fe["device"] == "cpu")
        lines.append(f"- The CPU's fp32 FMA peak (independent vector FMA chains on the native kernels' threads, no "
                     f"memory; the highest of the MLX workers' probes): {fma:.1f} GFLOP/s; the measured sgemm reaches "
                     f"{reach} of it")
    te = ", ".join(f"{k}={v}" for k, v in env["thread_env"].items() if v is not None) or "none set"
    lines.append(f"- Thread/BLAS environment variables: {te}")
    data = sorted({f"{r['config']}: {r['data']}" for r in report["results"]})
    lines.append(f"- Data: {'; '.join(data)}" + (" (synthetic = random symbols, same shape as the real data)"
                                                 if any(r["data"] == "synthetic" for r in report["results"]) else ""))
    for note in report.get("notes", []):
        lines.append(f"- Note: {note}")
    return lines


def _results_table(report: dict) -> list[str]:
    """One table row per configuration and framework: times (s), rates, memory, sgemm."""
    lines = ["| config | sizes | framework | device | timing | median epoch (s) | min (s) | max (s) "
             "| steps/s | chars/s | peak memory | peak RSS | sgemm GFLOP/s |",
             "|---|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in report["results"]:
        lines.append(f"| {r['config']} | {_sizes(r['settings'])} | {FRAMEWORK_NAMES[r['framework']]} "
                     f"{r['framework_version']} | {r['device']} | {r['timing']} | {_sig(r['median_epoch_s'])} "
                     f"| {_sig(r['min_epoch_s'])} | {_sig(r['max_epoch_s'])} | {_sig(r['steps_per_s'])} "
                     f"| {r['chars_per_s']:,.0f} | {_mib(r['peak_memory_bytes'])} "
                     f"({_mem_tag(r['peak_memory_source'])}) | {_mib(r['peak_rss_bytes'])} | {r['sgemm_gflops']:.1f} |")
    return lines


def _meaning(report: dict) -> str:
    """The paragraph that says what the figures mean and how they were taken."""
    return (
        "What the figures mean: the ratio is MLX's median epoch time divided by PyTorch's on the same "
        "configuration, data and batches (below 1: MLX is faster). Each epoch time is the real Trainer's "
        "train_epoch time, synchronised at both ends (mx.eval + mx.synchronize for MLX; "
        "torch.cuda/torch.mps.synchronize for PyTorch) and without data reading or evaluation; the warm-up "
        "(first epoch, or first batches with --quick, compilation included) is not timed. Each framework runs in "
        "its own process and the repeats alternate (A B A B ...), so a busy phase of a shared machine hits both; "
        "min/max show the spread. Compare ratios from one run rather than absolute times across runs."
        + (" Quick mode: per-batch time over a few batches times the steps of one epoch." if report["mode"] == "quick"
           else "")
        + " Effective FLOP rate counts only matmul FLOPs (input projection, recurrent and output layer, x3 for "
        "forward + backward). Peak memory: MLX's allocator peak (mx.get_peak_memory); PyTorch's allocator peak on "
        "CUDA/MPS, peak RSS on CPU; peak RSS (whole process, libraries included) is given for both.")


def _scaling_lines(report: dict) -> list[str]:
    """The data-parallel scaling table (``--distributed``)."""
    lines = ["", "Data-parallel scaling (LM, per-rank batch fixed, 1 thread per rank; efficiency = "
                 "chars/s(N) / (N x chars/s(1))):", "", "| framework | ranks | chars/s | efficiency |",
             "|---|--:|--:|--:|"]
    for row in report["scaling"]:
        lines.append(f"| {FRAMEWORK_NAMES[row['framework']]} | {row['ranks']} | {row['chars_per_s']:,.0f} "
                     f"| {row['efficiency']:.2f} |")
    lines.append(f"- {next(iter(report['scaling_details'].values()))['note']}")
    return lines


def write_plot(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["config"] for r in report["results"]))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.0), squeeze=False)
    colors = {"mlx": "#1f77b4", "mlx-op": "#9ecae1", "torch": "#ee4c2c"}
    for ax, name in zip(axes[0], names):
        rs = [r for r in report["results"] if r["config"] == name]
        med = [r["median_epoch_s"] for r in rs]
        err = [[r["median_epoch_s"] - r["min_epoch_s"] for r in rs],
               [r["max_epoch_s"] - r["median_epoch_s"] for r in rs]]
        labels = [f"{FRAMEWORK_NAMES[r['framework']]}\n({r['device']})" for r in rs]
        ax.bar(range(len(rs)), med, yerr=err, capsize=6, color=[colors.get(r["framework"], "grey") for r in rs])
        ax.set_xticks(range(len(rs)))
        ax.set_xticklabels(labels)
        s = rs[0]["settings"]
        title = f"{name}: " + _sizes(s)
        if name in report["ratios"]:
            title += f"\nMLX/PyTorch = {report['ratios'][name]:.2f}" + (
                " (disturbed run: not a result)" if ratios_disturbed(report) else "")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("epoch time (s)" + (", scaled from batches" if report["mode"] == "quick" else ""))
        ax.set_ylim(bottom=0)
    fig.suptitle(f"Median epoch time, min/max whiskers ({report['mode']}, {report['repeats']} repeats)", fontsize=10)
    fig.tight_layout()
    try:
        save_figure(fig, path, "benchmark chart (mlx_rnn.tools.bench.benchmark)")
    finally:
        plt.close(fig)


