"""One framework's side of ``scripts/benchmark.py``, run in its own process.

    python -m mlx_rnn.tools.bench.worker --framework mlx --task lm --settings '{"hidden_size": 512, ...}'

The driver (:mod:`mlx_rnn.tools.bench.benchmark`) starts one worker per framework and
configuration, so each process's peak memory is its own, and talks to it over
stdin/stdout, one JSON line per message, prefixed with ``@@bench`` (so anything
else a library prints on stdout is ignored):

1. on start the worker loads the data (real, encoded as the trainers do, or
   synthetic of the same shape), builds the framework's real ``Trainer``, runs the
   untimed warm-up (one epoch, or ``--warmup-batches`` batches in quick mode;
   this includes compilation), measures the fp32 sgemm rate, and answers
   ``{"event": "ready", ...}`` (framework, device, BLAS, threads, ...);
2. each ``run`` line on stdin trains one timed repeat (a whole epoch, or
   ``--batches`` batches in quick mode) and answers ``{"event": "run", "time_s",
   "steps"}``; ``time_s`` is ``Trainer.train_epoch``'s synchronised time;
3. ``quit`` answers ``{"event": "final", ...}`` with peak memory, then exits.

Errors are answered as ``{"event": "error", "message": ...}`` and the process
exits with 2 (bad input: unknown device, missing framework, bad data) or 1.
The framework is imported only through :mod:`mlx_rnn.core.backend`;
framework-specific figures (memory, sgemm, BLAS) import it lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import sys
import time

import numpy as np

from mlx_rnn.core.config import RunConfig, make_config
from .names import MARK

#: Training-set sizes of the shipped data after the 5% validation slice: 10,000
#: classification examples -> 9,500; text8-100k.txt (100,000 characters) -> 95,000.
SYNTHETIC_SIZES = {"classify": 9500, "lm": 95000}


def emit(event: str, **fields) -> None:
    sys.stdout.write(MARK + json.dumps(dict(event=event, **fields)) + "\n")
    sys.stdout.flush()


def synthetic_data(task: str, cfg: RunConfig, seed: int):
    """Random training data of the real data's shape (uniform symbols, random labels)."""
    rng = np.random.default_rng([seed, 0xBE7C])
    V = cfg.vocab_size
    if task == "classify":
        n = SYNTHETIC_SIZES["classify"]
        return (rng.integers(0, V, (n, cfg.seq_len)).astype(np.int32),
                rng.integers(0, 2, n).astype(np.int32))
    return rng.integers(0, V, SYNTHETIC_SIZES["lm"]).astype(np.int32)


def load_data(task: str, cfg: RunConfig, data_dir: str | None, synthetic: bool, seed: int):
    """(training data as the Trainer expects it, description)."""
    if synthetic:
        return synthetic_data(task, cfg, seed), "synthetic"
    from mlx_rnn.core.data import resolve_data_dir
    from mlx_rnn.core.taskdata import load_task_data
    from mlx_rnn.core.vocab import Indexer

    d = resolve_data_dir(data_dir)
    data = load_task_data(task, d, Indexer(cfg.vocab), cfg.val_fraction, seed)
    return data["train"], f"real ({d})"


class Counter:
    """A ``should_stop`` that becomes true after ``n`` polls (one poll per step)."""

    def __init__(self, n: int | None):
        self.n, self.k = n, 0

    def __call__(self) -> bool:
        self.k += 1
        return self.n is not None and self.k >= self.n


# ----- framework-specific figures (imported lazily) --------------------------------------
def peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)  # macOS: bytes; Linux: KiB


def peak_memory(framework: str, device: str) -> tuple[int | None, str]:
    """(bytes, where the figure comes from)."""
    if framework == "mlx":
        import mlx.core as mx

        fn = getattr(mx, "get_peak_memory", None) or getattr(mx.metal, "get_peak_memory", None)
        if fn is not None:
            return int(fn()), "mx.get_peak_memory (MLX allocator)"
        return peak_rss_bytes(), "peak RSS (ru_maxrss)"
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    if device == "mps":
        fn = getattr(torch.mps, "max_memory_allocated", None)
        if fn is not None:
            return int(fn()), "torch.mps.max_memory_allocated"
        return int(torch.mps.driver_allocated_memory()), "torch.mps.driver_allocated_memory (at the end; no peak API)"
    return peak_rss_bytes(), "peak RSS (ru_maxrss)"


def sgemm_gflops(framework: str, device: str, n: int, repeats: int) -> float:
    """fp32 (n x n) @ (n x n) rate in GFLOP/s under ``framework`` on ``device`` (median of
    ``repeats``)."""
    if framework == "mlx":
        from mlx_rnn import _blas as blas

        return blas.measure_sgemm_gflops_mlx(n, repeats, device=device)
    return torch_sgemm_gflops(n, repeats, device=device)


def fma_peak_gflops(framework: str, device: str) -> float | None:
    """The CPU's float32 FMA peak in GFLOP/s (:func:`mlx_rnn.native.fma_peak_gflops`, on the
    native team's threads): measured by the MLX worker on the CPU only, None elsewhere (the
    PyTorch worker does not load MLX) or where the packed kernels cannot run."""
    if framework != "mlx" or device != "cpu":
        return None
    from mlx_rnn import native

    return native.fma_peak_gflops()


def torch_sgemm_gflops(n: int = 1024, repeats: int = 10, warmup: int = 2,
                       device: str = "cpu") -> float:
    """fp32 (n x n) @ (n x n) rate in GFLOP/s under PyTorch (median of repeats).

    Synchronises CUDA/MPS before stopping the clock; warm-up excluded.
    """
    import torch

    dev = torch.device(device)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":
            torch.mps.synchronize()

    a = torch.randn(n, n, dtype=torch.float32, device=dev)
    b = torch.randn(n, n, dtype=torch.float32, device=dev)
    with torch.no_grad():
        for _ in range(warmup):
            a @ b
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            sync()
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(times) / 1e9


def torch_blas_info() -> dict:
    import torch

    cfg = torch.__config__.show()
    info = {}
    for key in ("BLAS_INFO", "LAPACK_INFO"):
        m = re.search(rf"\b{key}=([^,\s]+)", cfg)
        info[key.lower()] = m.group(1) if m else None
    par = torch.__config__.parallel_info()
    info["parallel_backend"] = next((ln.split(":", 1)[1].strip() for ln in par.splitlines()
                                     if ln.startswith("ATen parallel backend")), None)
    info["math_library"] = next((ln.strip() for ln in par.splitlines() if "Math Kernel Library" in ln
                                 or "OpenBLAS" in ln), None)
    try:
        from threadpoolctl import threadpool_info

        info["threadpoolctl"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
                                 for p in threadpool_info()]
    except ImportError:
        info["threadpoolctl"] = None
    return info


def backend_info(framework: str, device: str) -> dict:
    """Versions, device name, threads and the BLAS in use, detected in this process."""
    out = {"python": platform.python_version(), "pid": os.getpid()}
    if framework == "mlx":
        import mlx.core as mx

        from mlx_rnn import _blas as blas
        from mlx_rnn import recurrence
        from mlx_rnn.optimizer import fused_enabled

        info = blas.blas_info()
        out.update(version=mx.__version__, blas=blas.describe(info), blas_info=info,
                   device_name=_mlx_device_name(mx), threads=None, recurrence=recurrence.describe(),
                   recurrence_path=recurrence.path_for(mx.float32), fused_adamw=fused_enabled())
    else:
        import torch

        tb = torch_blas_info()
        out.update(version=torch.__version__, blas=f"{tb['blas_info']} ({tb['math_library'] or 'built in'})",
                   blas_info=tb, threads=torch.get_num_threads(), interop_threads=torch.get_num_interop_threads(),
                   device_name=_torch_device_name(torch, device))
    return out


def _mlx_device_name(mx) -> str | None:
    try:
        info = mx.device_info() if hasattr(mx, "device_info") else mx.metal.device_info()
        return info.get("device_name")
    except Exception:  # noqa: BLE001
        return None


def _torch_device_name(torch, device: str) -> str | None:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    if device == "mps":
        return f"Apple GPU (MPS, {platform.processor() or platform.machine()})"
    return None


# ----- the worker ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlx_rnn.tools.bench.worker",
                                description="Benchmark worker (started by scripts/benchmark.py).")
    p.add_argument("--framework", choices=("mlx", "torch"), required=True)
    p.add_argument("--task", choices=("classify", "lm"), required=True)
    p.add_argument("--settings", default="{}", help="JSON dict of training settings (embed_dim, ...)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir")
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--tf32", action="store_true", help="allow TF32 in float32 GPU products (default full float32)")
    p.add_argument("--batches", type=int, default=0, help="quick mode: timed batches per repeat (0: whole epochs)")
    p.add_argument("--warmup-batches", type=int, default=0,
                   help="quick mode: untimed warm-up batches (0: one whole warm-up epoch)")
    p.add_argument("--repeats", type=int, default=3, help="planned repeats (for the learning-rate schedule only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sgemm-n", type=int, default=1024)
    p.add_argument("--sgemm-repeats", type=int, default=10)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.framework == "torch":
        # torch's process must not get the OpenBLAS that mlx_rnn._blas preloads for MLX
        # (it imports blas only for the shared sgemm timer).
        os.environ["MLX_RNN_BLAS"] = "off"
    from mlx_rnn.core.data import DataError

    try:
        from mlx_rnn.core import backend
        from mlx_rnn.core.taskdata import check_trainable

        settings = json.loads(args.settings)
        fw = backend.train_module(args.framework)
        device = fw.select_device(args.device)
        fw.set_tf32(args.tf32)  # before the first matrix product (MLX reads its switch once)
        cfg = make_config(args.task, **settings, seed=args.seed, epochs=max(1, 1 + args.repeats),
                          device=device, precision=fw.precision())
        train, data_desc = load_data(args.task, cfg, args.data_dir, args.synthetic, args.seed)
        check_trainable(cfg, train, "training data")
        trainer = fw.Trainer(cfg, train)
        t0 = time.perf_counter()
        res = trainer.train_epoch(0, should_stop=Counter(args.warmup_batches or None))
        warmup_s = time.perf_counter() - t0
        if res.nonfinite_step is not None:
            raise RuntimeError(f"non-finite loss in the warm-up at step {res.nonfinite_step + 1}")
        sgemm = sgemm_gflops(args.framework, device, args.sgemm_n, args.sgemm_repeats)
        emit("ready", framework=fw.FRAMEWORK, device=device, data=data_desc,
             steps_per_epoch=trainer.steps_per_epoch, warmup_s=warmup_s, warmup_steps=res.steps,
             sgemm_gflops=sgemm, sgemm_n=args.sgemm_n,
             fma_peak_gflops=fma_peak_gflops(args.framework, device), backend=backend_info(args.framework, device),
             describe_backend=fw.describe_backend(), precision=fw.precision(),
             describe_precision=fw.describe_precision(), config=cfg.to_json(), cpu_s=time.process_time())
    except (DataError, ValueError, OSError) as e:
        emit("error", message=" ".join(str(e).split()) or type(e).__name__, kind="bad input")
        return 2
    except Exception as e:  # noqa: BLE001
        emit("error", message=f"{type(e).__name__}: {' '.join(str(e).split())}", kind="failure")
        return 1

    epoch = 1
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            res = trainer.train_epoch(epoch, should_stop=Counter(args.batches or None))
            epoch += 1
            if res.nonfinite_step is not None:
                emit("error", message=f"non-finite loss at step {res.nonfinite_step + 1}", kind="diverged")
                return 1
            emit("run", time_s=res.time_s, steps=res.steps, mean_loss=res.mean_loss)
        elif cmd == "quit":
            mem, source = peak_memory(args.framework, device)
            emit("final", peak_memory_bytes=mem, peak_memory_source=source, peak_rss_bytes=peak_rss_bytes())
            return 0
        elif cmd:
            emit("error", message=f"unknown command {cmd!r}", kind="failure")
            return 1
    return 0  # stdin closed: the driver went away


if __name__ == "__main__":
    sys.exit(main())
