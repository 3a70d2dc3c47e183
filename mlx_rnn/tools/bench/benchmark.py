"""Timing benchmark: MLX against PyTorch on identical configurations (``scripts/benchmark.py``).

Framework-neutral: this module imports neither mlx nor torch. For each configuration
it starts one worker process per framework (:mod:`mlx_rnn.tools.bench.worker`, driven by
:mod:`mlx_rnn.tools.bench.driver`), so each
framework's peak memory is its own and neither shares a BLAS or thread pool with
the other. Each worker trains with the framework's real ``Trainer`` on the real
data (or synthetic data of the same shape), runs an untimed warm-up (the first
epoch, or the first batches in ``--quick`` mode, compilation included), then the
driver asks the workers for timed repeats in turn, A B A B ..., so that slow
phases of a shared machine hit both frameworks alike. Every time is
``Trainer.train_epoch``'s ``time_s``: synchronised at both ends (``mx.eval`` +
``mx.synchronize`` / ``torch.cuda|mps.synchronize``), without data reading or
evaluation.

Output: a Markdown report on stdout (environment, table, ratios, FLOP rates, notes;
:mod:`mlx_rnn.tools.bench.report`, from the rows of :mod:`mlx_rnn.tools.bench.rows`;
names and constants: :mod:`mlx_rnn.tools.bench.names`),
optionally a JSON file (``--output-json``) and a PNG bar chart (``--plot``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from mlx_rnn.run.flags import OneLineParser, prog_name
from mlx_rnn.core import switches
from mlx_rnn.core.cpus import usable_cpus
from mlx_rnn.run.errors import EXIT_CHECK_FAILED, EXIT_OK, report_exit
from .driver import Timing, WorkerError, time_config
from .names import FRAMEWORKS, QUICK_BATCHES, QUICK_WARMUP, SIZE_KEYS, STANDARD_CONFIGS, THREAD_ENV
from .rows import compute_ratios, result_row
from . import trust

EXIT_FAILED = EXIT_CHECK_FAILED  # a worker failed (the other codes: mlx_rnn/run/errors.py)


# ----- command line --------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        val = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if val < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {val}")
    return val


def _names(allowed):
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(allowed)} (comma-separated)")
        return list(dict.fromkeys(names))
    return parse


def build_parser() -> argparse.ArgumentParser:
    std = "; ".join(f"{n}: E={c['embed_dim']} H={c['hidden_size']} layers={c['num_layers']} "
                    f"B={c['batch_size']} T={c['seq_len']}" for n, c in STANDARD_CONFIGS.items())
    p = OneLineParser(
        prog=prog_name("benchmark.py"),
        description=("Time MLX and PyTorch training on identical configurations in one run: each framework "
                     "in its own process, repeats alternating A B A B, warm-up (first epoch or batches, "
                     "compilation included) not timed, every timer synchronised. Prints a Markdown report; "
                     "optionally writes JSON and a PNG plot."),
        epilog=(f"Standard configs: {std}. A size flag overrides that size in every config run. "
                "The report judges whether the run was disturbed (other processes' CPU use while it timed, "
                "the spread of the repeats, the agreement of the paired MLX/PyTorch ratios); a disturbed "
                "run's ratios are printed as not to be trusted, and the JSON says \"trustworthy\": false "
                "with the reasons (docs/benchmarks.md). "
                "Exit codes: 0 ok, 1 a worker failed, 2 bad input or usage, 3 training diverged, 130 interrupted."),
    )
    p.add_argument("--configs", type=_names(tuple(STANDARD_CONFIGS)), default=list(STANDARD_CONFIGS),
                   help="configurations to run (default: classify,lm,lm-t100)")
    p.add_argument("--frameworks", type=_names(FRAMEWORKS), default=list(FRAMEWORKS),
                   help="frameworks to time, in this order within each repeat (default: mlx,mlx-op,torch; "
                        "mlx = the native primitives where they run, mlx-op = the Python-level op and "
                        "mlx.optimizers' AdamW)")
    p.add_argument("--embed-dim", type=_positive_int, help="embedding size E")
    p.add_argument("--hidden-size", type=_positive_int, help="LSTM hidden size H")
    p.add_argument("--num-layers", type=_positive_int, help="stacked LSTM layers")
    p.add_argument("--batch-size", type=_positive_int, help="sequences per batch B")
    p.add_argument("--seq-len", type=_positive_int,
                   help="sequence length T (the real classification examples are 20 characters: "
                        "for classify it applies only with --synthetic)")
    add_repeat_flags(p)
    p.add_argument("--quick", action="store_true",
                   help="time a fixed number of batches per repeat instead of whole epochs, scaled to an epoch "
                        f"(default batches: {', '.join(f'{k} {v}' for k, v in QUICK_BATCHES.items())})")
    p.add_argument("--quick-batches", type=_positive_int, help="--quick: timed batches per repeat, every config")
    p.add_argument("--warmup-batches", type=_positive_int,
                   help="--quick: untimed warm-up batches, every config (default: "
                        + ", ".join(f"{k} {v}" for k, v in QUICK_WARMUP.items())
                        + "; without --quick the warm-up is one whole epoch)")
    p.add_argument("--device-mlx", choices=("auto", "gpu", "cpu"), default="auto",
                   help="MLX device (default auto: GPU if MLX has one)")
    p.add_argument("--device-torch", choices=("auto", "mps", "cuda", "cpu"), default="auto",
                   help="PyTorch device (default auto: MPS, then CUDA, then CPU)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 in float32 matrix products on a GPU, in both frameworks (default: full float32; "
                        "the report says which precision ran)")
    p.add_argument("--threads", type=_positive_int,
                   help="set OMP/OPENBLAS/MKL/VECLIB thread counts for both workers (default: leave as is)")
    p.add_argument("--data-dir", help="directory with the text8 files (default: $MLX_RNN_DATA, else ./data)")
    p.add_argument("--synthetic", action="store_true",
                   help="random data of the real data's shape (also used, with a note, when the data is absent)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialisation and data order (default 0)")
    p.add_argument("--sgemm-n", type=_positive_int, default=1024, help="matrix size of the sgemm measurement")
    p.add_argument("--output-json", metavar="PATH", help="also write the results as JSON here")
    p.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of the median epoch times here")
    p.add_argument("--distributed", action="store_true",
                   help="also measure LM training on 1 vs 2 data-parallel ranks on this machine "
                        "(mlx.launch ring / torchrun gloo, 1 thread per rank); adds \"scaling\" to the JSON")
    p.add_argument("--sweep", action="store_true",
                   help="also sweep hidden size 128-1024 and sequence length 20-200 around both tasks' defaults, "
                        "MLX vs PyTorch per training step (synthetic data); adds \"sweep\" to the JSON")
    p.add_argument("--sweep-only", action="store_true", help="run the sweep only (no standard configurations)")
    p.add_argument("--sweep-plot", metavar="PATH", help="with --sweep: write the sweep's PNG plot here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_scoring_flags(p)
    return p


def add_repeat_flags(p: argparse.ArgumentParser) -> None:
    """--repeats and --wait-quiet: what makes a run's judgement (mlx_rnn/tools/bench/trust.py) pass."""
    p.add_argument("--repeats", type=_positive_int, default=3,
                   help="timed repeats per framework (default 3; with 5 or more the judgement of the run forgives "
                        "one disturbed repeat)")
    p.add_argument("--wait-quiet", type=_positive_int, metavar="SECONDS",
                   help="first wait, up to SECONDS, until other processes leave the CPUs the benchmark uses free "
                        "(measured every 10 s); then run, quiet or not (the report says which)")


# ----- long-text scoring (mlx_rnn/tools/bench/scoring.py) --------------------------------------------
def add_scoring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scoring", action="store_true",
                   help="also measure long-text scoring (get_log_prob_sequence, LM default sizes): characters "
                        "per second and peak RSS per framework for 10k and 100k characters; adds \"scoring\"")
    p.add_argument("--scoring-only", action="store_true", help="measure the scoring only (no training configs)")
    p.add_argument("--scoring-1m", action="store_true", help="with --scoring: also score a 1,000,000-character text")


def run_scoring(args, log) -> list[dict]:
    """The scoring rows for ``--scoring`` (empty without it)."""
    if not (args.scoring or args.scoring_only):
        return []
    from .scoring import SCORING_1M, SCORING_CHARS, measure_scoring

    lengths = list(SCORING_CHARS) + ([SCORING_1M] if args.scoring_1m else [])
    try:
        return measure_scoring(args.frameworks, lengths, threads=args.threads, log=log)
    except RuntimeError as e:
        raise WorkerError(str(e)) from None


def config_settings(name: str, args) -> dict:
    s = dict(STANDARD_CONFIGS[name])
    for key in SIZE_KEYS:
        val = getattr(args, key, None)
        if val is not None:
            s[key] = val
    return s


# ----- environment ---------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def machine_environment() -> dict:
    env = {
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
    }
    if hasattr(os, "sched_getaffinity"):
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        env["load_average_start"] = list(os.getloadavg())
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            env["memory_total_bytes"] = int(fh.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return env


# ----- the run --------------------------------------------------------------------------------
def _resolve_data(args, names: list[str], log) -> tuple[dict, list[str]]:
    """Per config: True for synthetic data. Returns (that dict, notes)."""
    from mlx_rnn.core.data import data_dir_complete, resolve_data_dir
    from mlx_rnn.core.taskdata import task_files

    notes = []
    out = {}
    data_dir = resolve_data_dir(args.data_dir)
    for name in names:
        task = STANDARD_CONFIGS[name]["task"]
        if args.synthetic:
            out[name] = True
        elif data_dir_complete(data_dir, task_files(task)):
            out[name] = False
        else:
            out[name] = True
            note = (f"{name}: real data not found in {data_dir} (set --data-dir or $MLX_RNN_DATA): "
                    "using synthetic data of the same shape")
            notes.append(note)
            log(f"note: {note}")
    return out, notes


def run_benchmark(args, log=lambda *a: None) -> dict:
    """Run every configuration and framework; returns the report dict (the JSON; ``"switches"``:
    the ``MLX_RNN_*`` switches not at their default, ``{variable: value}``)."""
    t_start = time.perf_counter()
    set_switches = switches.read().non_default()  # (a bad one: one line, exit 2, before any timing)
    cpus = usable_cpus()
    waited = None
    if getattr(args, "wait_quiet", None):  # (before the devices are known: as if on the CPU)
        waited = trust.wait_quiet(args.wait_quiet, trust.load_limit(cpus, trust.benchmark_threads(cpus, args.threads)),
                                  log)
    env = machine_environment()
    thread_env = {}
    if args.threads:
        thread_env = {k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                      "VECLIB_MAXIMUM_THREADS")}
        env["thread_env"].update(thread_env)
    timing = Timing.from_args(args, thread_env)
    start = trust.machine_sample()
    results, env["frameworks"], notes, windows = time_standard_configs(args, timing, log)
    # the machine's FMA peak: the highest the MLX workers measured (a slower core lowers a probe)
    env["fma_peak_gflops"] = max((r["fma_peak_gflops"] for r in results if r.get("fma_peak_gflops")), default=None)
    if windows:
        windows.append(trust.whole_run_window(start, trust.machine_sample(), windows))
    if hasattr(os, "getloadavg"):
        env["load_average_end"] = list(os.getloadavg())
    ratios = compute_ratios(results, args.configs)
    sweep = []
    if getattr(args, "sweep", False):  # the sweep's frameworks are MLX (default path) and PyTorch
        from .sweep import run_sweep

        sweep = run_sweep(timing, log)
        windows += [row["timed_window"] for row in sweep]
    scaling, scaling_details = run_scaling(args, log)
    scoring_rows = run_scoring(args, log)
    devices = [fe["device"] for fe in env["frameworks"].values()] or ["cpu"]
    judgement = None  # (scoring and scaling alone give no ratio to judge)
    if windows:
        judgement = trust.judge(results, windows, cpus, trust.benchmark_threads(cpus, args.threads, devices))
        judgement["wait_quiet"] = waited
    return {
        "environment": env,
        "switches": set_switches,
        "scoring_rows": scoring_rows,
        "scaling": scaling,
        "scaling_details": scaling_details,
        "sweep": sweep,
        "mode": "quick" if args.quick else "full",
        "repeats": args.repeats,
        "results": results,
        **ratios,
        "ratio_definition": ("MLX median epoch time / PyTorch median epoch time, same config (< 1: MLX faster); "
                             "ratios: MLX as it runs by default (native primitives on the CPU), ratios_op: the "
                             "Python-level op with mlx.optimizers' AdamW, ratios_native_vs_op: MLX / MLX op"),
        "ratio_notes": ("ratios_min: fastest repeat / fastest repeat (the least disturbed on a shared machine); "
                        "ratios_paired: median over repeats of MLX time / the PyTorch time that followed it"),
        "trustworthy": judgement and judgement["trustworthy"],
        "trust": judgement,
        "notes": notes,
        "wall_time_s": time.perf_counter() - t_start,
    }


def time_standard_configs(args, timing: Timing, log) -> tuple[list[dict], dict, list[str], list[dict]]:
    """Time ``args.configs`` for ``args.frameworks``: (result rows, per-framework environment
    (version, device, BLAS, threads, median sgemm GFLOP/s), notes, each config's timed-phase
    window for :func:`mlx_rnn.tools.bench.trust.judge`)."""
    synthetic, notes = _resolve_data(args, args.configs, log)
    results, windows = [], []
    frameworks_env: dict[str, dict] = {}
    for name in args.configs:
        settings = config_settings(name, args)
        task = settings["task"]
        if task == "classify" and not synthetic[name] and settings["seq_len"] != 20:
            note = (f"{name}: --seq-len {settings['seq_len']} ignored: the real classification examples are "
                    "20 characters (use --synthetic for other lengths)")
            notes.append(note)
            log(f"note: {note}")
            settings["seq_len"] = 20
        batches = (args.quick_batches or QUICK_BATCHES[task]) if args.quick else 0
        warmup = (args.warmup_batches or QUICK_WARMUP[task]) if args.quick else 0
        timing_c = replace(timing, synthetic=synthetic[name], batches=batches, warmup_batches=warmup)
        ready, runs, finals, timed = time_config(name, settings, args.frameworks, timing_c, log)
        windows.append(timed)
        for fw in args.frameworks:
            results.append(result_row(name, settings, fw, timing_c, ready[fw], runs[fw], finals[fw]))
            b = ready[fw]["backend"]
            fe = frameworks_env.setdefault(fw, {
                "version": b["version"], "device": ready[fw]["device"], "device_name": b.get("device_name"),
                "blas": b["blas"], "blas_info": b["blas_info"], "threads": b.get("threads"),
                "interop_threads": b.get("interop_threads"), "describe_backend": ready[fw]["describe_backend"],
                "sgemm_gflops": [], "sgemm_n": ready[fw]["sgemm_n"], "precision": ready[fw]["precision"],
                "describe_precision": ready[fw]["describe_precision"]})
            fe["sgemm_gflops"].append(ready[fw]["sgemm_gflops"])
    for fe in frameworks_env.values():
        fe["sgemm_gflops"] = statistics.median(fe["sgemm_gflops"])
    return results, frameworks_env, notes, windows


def run_scaling(args, log) -> tuple[list[dict], dict]:
    """``--distributed``: LM training on 1 and 2 ranks per framework: (rows, details per framework)."""
    scaling, scaling_details = [], {}
    if not getattr(args, "distributed", False):
        return scaling, scaling_details
    from .scaling import measure_scaling

    for fw in args.frameworks:
        log(f"[scaling] {fw}: LM training on 1 and 2 ranks (1 thread per rank)")
        try:
            details = measure_scaling(fw, (1, 2), threads_per_rank=1)
        except RuntimeError as e:  # one line (bench_scaling.failure_line), not a traceback
            raise WorkerError(str(e)) from None
        scaling_details[fw] = details
        scaling += [dict(row, framework=fw) for row in details["scaling"]]
    return scaling, scaling_details


# ----- entry point ---------------------------------------------------------------------------
def _check_out_path(flag: str, path) -> None:
    from mlx_rnn.core.outputs import check_file_output, check_plot_output

    (check_plot_output if flag in ("--plot", "--sweep-plot") else check_file_output)(path, flag)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        _check_out_path("--output-json", args.output_json)
        _check_out_path("--plot", args.plot)
        _check_out_path("--sweep-plot", args.sweep_plot)
        if args.sweep_only:
            args.sweep, args.configs = True, []
        if args.sweep_plot and not args.sweep:
            raise ValueError("--sweep-plot needs --sweep")
        if args.scoring_only:
            args.configs = []
        report = run_benchmark(args, log)
    except (Exception, KeyboardInterrupt) as e:  # WorkerError carries its exit_code (driver.py)
        return report_exit(e)
    from .report import format_markdown, write_plot

    print(format_markdown(report), flush=True)
    if args.output_json:
        from mlx_rnn.core.checkpoint import atomic_write_bytes

        atomic_write_bytes(args.output_json, (json.dumps(report, indent=2) + "\n").encode(), follow_links=True)
    if args.plot:
        write_plot(report, args.plot)
    if args.sweep_plot:
        from .sweep import write_sweep_plot

        write_sweep_plot(report["sweep"], args.sweep_plot, f"Training step time vs work ({report['environment']['cpu_model']})")
    return EXIT_OK
