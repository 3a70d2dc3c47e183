"""Timing benchmark: MLX against PyTorch on identical configurations (``scripts/benchmark.py``).

Framework-neutral: this driver imports neither mlx nor torch. For each configuration
it starts one worker process per framework (:mod:`mlx_rnn.tools.bench.worker`), so each
framework's peak memory is its own and neither shares a BLAS or thread pool with
the other. Each worker trains with the framework's real ``Trainer`` on the real
data (or synthetic data of the same shape), runs an untimed warm-up (the first
epoch, or the first batches in ``--quick`` mode, compilation included), then the
driver asks the workers for timed repeats in turn, A B A B ..., so that slow
phases of a shared machine hit both frameworks alike. Every time is
``Trainer.train_epoch``'s ``time_s``: synchronised at both ends (``mx.eval`` +
``mx.synchronize`` / ``torch.cuda|mps.synchronize``), without data reading or
evaluation.

Output: a Markdown report on stdout (environment, table, ratios, FLOP rates, notes),
optionally a JSON file (``--output-json``) and a PNG bar chart (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlx_rnn.core.config import OneLineParser, prog_name

ROOT = Path(__file__).resolve().parents[3]  # the repository root (mlx_rnn/tools/bench/<file>)
MARK = "@@bench "
#: "mlx" runs whatever path MLX_RNN_LSTM_IMPL picks (default: the native primitives on the CPU);
#: "mlx-op" forces the Python-level op and mlx.optimizers' AdamW (the path before the primitives).
FRAMEWORKS = ("mlx", "mlx-op", "torch")
FRAMEWORK_NAMES = {"mlx": "MLX", "mlx-op": "MLX op", "torch": "PyTorch"}
#: Environment of each framework variant's worker, and the framework it runs.
VARIANT_ENV = {"mlx-op": {"MLX_RNN_LSTM_IMPL": "op", "MLX_RNN_ADAMW": "mlx", "MLX_RNN_LAYERS": "mlx"}}
BASE_FRAMEWORK = {"mlx": "mlx", "mlx-op": "mlx", "torch": "torch"}
SIZE_KEYS = ("embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len")
#: The standard configurations: the trainers' defaults of both tasks (classify, lm) and the
#: longer-sequence LM that the benchmark measured before the defaults changed (lm-t100).
STANDARD_CONFIGS = {
    "classify": dict(task="classify", embed_dim=32, hidden_size=128, num_layers=1, batch_size=64, seq_len=20),
    "lm": dict(task="lm", embed_dim=512, hidden_size=512, num_layers=2, batch_size=32, seq_len=25),
    "lm-t100": dict(task="lm", embed_dim=64, hidden_size=512, num_layers=2, batch_size=32, seq_len=100),
}
#: --quick: timed batches per repeat (a classifier batch takes milliseconds, an LM batch seconds).
QUICK_BATCHES = {"classify": 10, "lm": 4}
#: --quick: untimed warm-up batches (the first includes tracing and compilation).
QUICK_WARMUP = {"classify": 3, "lm": 2}
#: Pause before each timed repeat, so the previous worker's spinning BLAS/OpenMP threads go to sleep.
SETTLE_S = 0.25
VOCAB_SIZE = 27
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "OMP_WAIT_POLICY", "MLX_RNN_BLAS", "MLX_RNN_LSTM_ACT")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class WorkerError(RuntimeError):
    """A worker failed; ``kind`` is "bad input", "diverged" or "failure"."""

    def __init__(self, message: str, kind: str = "failure"):
        super().__init__(message)
        self.kind = kind


# ----- FLOPs ---------------------------------------------------------------------------------
def matmul_flops_per_step(task: str, embed_dim: int, hidden_size: int, num_layers: int, batch_size: int,
                          seq_len: int, vocab_size: int = VOCAB_SIZE) -> int:
    """Matrix-multiply FLOPs of one training step (forward + backward), one multiply-add = 2 FLOPs.

    With B batch, T steps, E embedding size, H hidden size, ``in`` = E for layer 0
    and H above, per layer:

    - input projection, all steps at once: (B*T, in) x (in, 4H) -> 2*B*T*in*4H;
    - recurrent, per step (B, H) x (H, 4H), T steps -> 2*B*T*H*4H;

    and the output layer: 2*B*T*H*V for the LM (logits at every step), 2*B*H*1 for
    the classifier (one logit from the last step). The backward pass of a matmul
    Y = X W costs two matmuls of the same size (dX = dY W^T, dW = X^T dY), so
    forward + backward = 3 x forward. Element-wise work (gates, softmax, Adam)
    is not counted: this is the work a BLAS could do, to compare with sgemm peak.
    """
    B, T, E, H, L = batch_size, seq_len, embed_dim, hidden_size, num_layers
    fwd = 0
    for layer in range(L):
        inp = E if layer == 0 else H
        fwd += 2 * B * T * inp * 4 * H + 2 * B * T * H * 4 * H
    fwd += 2 * B * T * H * vocab_size if task == "lm" else 2 * B * H * 1
    return 3 * fwd


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
    p.add_argument("--repeats", type=_positive_int, default=3, help="timed repeats per framework (default 3)")
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


# ----- workers ---------------------------------------------------------------------------------
class Worker:
    """One framework x configuration process, driven over stdin/stdout."""

    def __init__(self, framework: str, name: str, settings: dict, args, synthetic: bool, batches: int,
                 warmup_batches: int, thread_env: dict):
        self.framework, self.name = framework, name
        self.base = BASE_FRAMEWORK[framework]
        device = args.device_mlx if self.base == "mlx" else args.device_torch
        sizes = {k: settings[k] for k in SIZE_KEYS}
        cmd = [sys.executable, "-m", "mlx_rnn.tools.bench.worker", "--framework", self.base, "--task", settings["task"],
               "--settings", json.dumps(sizes), "--device", device, "--repeats", str(args.repeats),
               "--seed", str(args.seed), "--sgemm-n", str(args.sgemm_n)]
        if batches:
            cmd += ["--batches", str(batches), "--warmup-batches", str(warmup_batches)]
        if synthetic:
            cmd.append("--synthetic")
        elif args.data_dir:
            cmd += ["--data-dir", str(Path(args.data_dir).resolve())]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.update(thread_env)
        env.update(VARIANT_ENV.get(framework, {}))
        self.stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, bufsize=1)

    def _stderr_tail(self, n: int = 8) -> str:
        self.stderr.seek(0)
        lines = [ln.rstrip() for ln in self.stderr.read().splitlines() if ln.strip()]
        return " | ".join(lines[-n:])

    def read(self) -> dict:
        """The next message; WorkerError if the worker reports an error or dies."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                rc = self.proc.wait()
                tail = self._stderr_tail()
                raise WorkerError(f"[{self.name}] {self.framework} worker exited with code {rc}"
                                  + (f": {tail}" if tail else ""))
            if not line.startswith(MARK):
                continue
            msg = json.loads(line[len(MARK):])
            if msg.get("event") == "error":
                self.proc.wait()
                text = str(msg.get("message")).replace("--device ", f"--device-{self.base} ")
                raise WorkerError(f"[{self.name}] {self.framework}: {text}", msg.get("kind", "failure"))
            return msg

    def send(self, command: str) -> None:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # read() reports the exit

    def finish(self) -> dict:
        self.send("quit")
        msg = self.read()
        self.proc.wait()
        self.stderr.close()
        return msg

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


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


def time_config(name, settings, frameworks, args, synthetic, batches, warmup, thread_env, log):
    """Start one worker per framework, run ``args.repeats`` timed repeats A B A B ..., stop them.

    Returns (ready messages, timed runs, final messages), each keyed by framework."""
    workers, ready = [], {}
    try:
        for fw in frameworks:
            log(f"[{name}] {fw}: starting, warm-up "
                + (f"{warmup} batch{'es' if warmup != 1 else ''}" if batches else "1 epoch") + " (not timed)")
            w = Worker(fw, name, settings, args, synthetic, batches, warmup, thread_env)
            workers.append(w)
            msg = w.read()
            msg["startup_s"] = time.perf_counter() - w.t0
            ready[fw] = msg
            log(f"[{name}] {fw} {msg['backend']['version']} on {msg['device']}: ready in {msg['startup_s']:.1f} s "
                f"(warm-up {msg['warmup_steps']} steps {msg['warmup_s']:.1f} s); sgemm "
                f"{msg['sgemm_gflops']:.1f} GFLOP/s")
        runs: dict[str, list[dict]] = {fw: [] for fw in frameworks}
        for r in range(args.repeats):
            for w in workers:  # A B A B ...
                time.sleep(SETTLE_S)
                w.send("run")
                msg = w.read()
                runs[w.framework].append(msg)
                log(f"[{name}] repeat {r + 1}/{args.repeats} {w.framework}: {msg['steps']} steps in "
                    f"{msg['time_s']:.3f} s")
        finals = {w.framework: w.finish() for w in workers}
    finally:
        for w in workers:
            w.kill()
    return ready, runs, finals


def _summary(times: list[float]) -> dict:
    return {"median_epoch_s": statistics.median(times), "min_epoch_s": min(times), "max_epoch_s": max(times)}


def run_benchmark(args, log=lambda *a: None) -> dict:
    """Run every configuration and framework; returns the report dict (the JSON)."""
    t_start = time.perf_counter()
    env = machine_environment()
    thread_env = {}
    if args.threads:
        thread_env = {k: str(args.threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                      "VECLIB_MAXIMUM_THREADS")}
        env["thread_env"].update(thread_env)
    synthetic, notes = _resolve_data(args, args.configs, log)
    results = []
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
        ready, runs, finals = time_config(name, settings, args.frameworks, args, synthetic[name], batches, warmup,
                                          thread_env, log)
        for fw in args.frameworks:
            results.append(_result(name, settings, fw, ready[fw], runs[fw], finals[fw], batches, synthetic[name]))
            b = ready[fw]["backend"]
            fe = frameworks_env.setdefault(fw, {
                "version": b["version"], "device": ready[fw]["device"], "device_name": b.get("device_name"),
                "blas": b["blas"], "blas_info": b["blas_info"], "threads": b.get("threads"),
                "interop_threads": b.get("interop_threads"), "describe_backend": ready[fw]["describe_backend"],
                "sgemm_gflops": [], "sgemm_n": ready[fw]["sgemm_n"]})
            fe["sgemm_gflops"].append(ready[fw]["sgemm_gflops"])
    for fe in frameworks_env.values():
        fe["sgemm_gflops"] = statistics.median(fe["sgemm_gflops"])
    env["frameworks"] = frameworks_env
    if hasattr(os, "getloadavg"):
        env["load_average_end"] = list(os.getloadavg())
    ratios = compute_ratios(results, args.configs)
    sweep = []
    if getattr(args, "sweep", False):  # the sweep's frameworks are MLX (default path) and PyTorch
        from .sweep import run_sweep

        sweep = run_sweep(args, thread_env, log)
    scaling, scaling_details = [], {}
    if getattr(args, "distributed", False):
        from .scaling import measure_scaling

        for fw in args.frameworks:
            log(f"[scaling] {fw}: LM training on 1 and 2 ranks (1 thread per rank)")
            try:
                details = measure_scaling(fw, (1, 2), threads_per_rank=1)
            except RuntimeError as e:  # one line (bench_scaling.failure_line), not a traceback
                raise WorkerError(str(e)) from None
            scaling_details[fw] = details
            scaling += [dict(row, framework=fw) for row in details["scaling"]]
    scoring_rows = run_scoring(args, log)
    return {
        "environment": env,
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
        "notes": notes,
        "wall_time_s": time.perf_counter() - t_start,
    }


def compute_ratios(results: list[dict], names) -> dict:
    """Epoch-time ratios per config: MLX / PyTorch (median, fastest, paired), MLX op / PyTorch
    and MLX / MLX op, for the frameworks that ran."""
    out = {"ratios": {}, "ratios_min": {}, "ratios_paired": {}, "ratios_op": {}, "ratios_native_vs_op": {}}
    for name in names:
        by_fw = {r["framework"]: r for r in results if r["config"] == name}
        m, o, t = by_fw.get("mlx"), by_fw.get("mlx-op"), by_fw.get("torch")
        if m and t:
            out["ratios"][name] = m["median_epoch_s"] / t["median_epoch_s"]
            out["ratios_min"][name] = m["min_epoch_s"] / t["min_epoch_s"]
            out["ratios_paired"][name] = statistics.median(
                a / b for a, b in zip(m["epoch_times_s"], t["epoch_times_s"]))
        if o and t:
            out["ratios_op"][name] = o["median_epoch_s"] / t["median_epoch_s"]
        if m and o:
            out["ratios_native_vs_op"][name] = m["median_epoch_s"] / o["median_epoch_s"]
    return out


def _result(name, settings, fw, ready, runs, final, batches, synthetic) -> dict:
    spe = ready["steps_per_epoch"]
    batch_times = [m["time_s"] / m["steps"] for m in runs]
    if batches:
        epoch_times = [t * spe for t in batch_times]
        wu = ready["warmup_steps"]
        timing = f"quick: {batches} batches x scaled to {spe} steps/epoch (warm-up {wu} batch{'es' if wu != 1 else ''})"
    else:
        epoch_times = [m["time_s"] for m in runs]
        timing = "full epochs (warm-up 1 epoch)"
    out = {"config": name, "settings": dict(settings), "framework": fw,
           "framework_version": ready["backend"]["version"], "device": ready["device"], "timing": timing,
           "data": "synthetic" if synthetic else "real",
           "repeats": len(runs), "steps_per_epoch": spe, "epoch_times_s": epoch_times, "batch_times_s": batch_times,
           "timed_steps": [m["steps"] for m in runs]}
    out.update(_summary(epoch_times))
    out["median_batch_s"] = statistics.median(batch_times)
    out["steps_per_s"] = spe / out["median_epoch_s"]
    out["chars_per_s"] = out["steps_per_s"] * settings["batch_size"] * settings["seq_len"]
    out["peak_memory_bytes"] = final["peak_memory_bytes"]
    out["peak_memory_source"] = final["peak_memory_source"]
    out["peak_rss_bytes"] = final["peak_rss_bytes"]
    out["sgemm_gflops"] = ready["sgemm_gflops"]
    flops = matmul_flops_per_step(settings["task"], *(settings[k] for k in SIZE_KEYS))
    out["matmul_gflop_per_step"] = flops / 1e9
    out["effective_gflops"] = flops * spe / out["median_epoch_s"] / 1e9
    out["effective_fraction_of_sgemm"] = out["effective_gflops"] / out["sgemm_gflops"] if out["sgemm_gflops"] else None
    out["warmup_s"] = ready["warmup_s"]
    out["warmup_steps"] = ready["warmup_steps"]
    out["blas"] = ready["backend"]["blas"]
    out["recurrence"] = ready["backend"].get("recurrence")
    out["fused_adamw"] = ready["backend"].get("fused_adamw")
    out["final_mean_loss"] = runs[-1].get("mean_loss") if runs else None
    return out


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
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except WorkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return {"bad input": EXIT_BAD_INPUT, "diverged": EXIT_DIVERGED}.get(e.kind, EXIT_FAILED)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    from .report import format_markdown, write_plot

    print(format_markdown(report), flush=True)
    if args.output_json:
        from mlx_rnn.core.checkpoint import atomic_write_bytes

        atomic_write_bytes(args.output_json, (json.dumps(report, indent=2) + "\n").encode())
    if args.plot:
        write_plot(report, args.plot)
    if args.sweep_plot:
        from .sweep import write_sweep_plot

        write_sweep_plot(report["sweep"], args.sweep_plot, f"Training step time vs work ({report['environment']['cpu_model']})")
    return EXIT_OK
