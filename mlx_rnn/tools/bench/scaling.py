"""Data-parallel scaling: training throughput with 1 and N ranks on this machine.

:func:`measure_scaling` trains the character LM for a fixed number of steps as one
process and as N ranks (``mlx.launch --backend ring`` on 127.0.0.1 for MLX,
``torchrun --standalone`` with gloo for PyTorch), and reports

    {"scaling": [{"ranks": 1, "chars_per_s": ..., "efficiency": 1.0},
                 {"ranks": 2, "chars_per_s": ..., "efficiency": ...}], ...}

with ``chars_per_s`` = characters trained per second over all ranks (global batch x
sequence length x steps / synchronised epoch time of rank 0, after a warm-up epoch
that includes compilation) and ``efficiency(N) = chars_per_s(N) / (N * chars_per_s(1))``.
This is weak scaling: the per-rank batch is fixed, so N ranks train N times the
characters per step. Each configuration runs ``repeats`` times and the best is kept
(the machine may be shared). On a machine with fewer cores than ranks x threads the
ranks compete for cores, and the figure says more about the machine than about MLX.

Run: ``python -m mlx_rnn.tools.bench.scaling [--framework torch] [--ranks 1 2]``; the
benchmark script can call :func:`measure_scaling` and merge its dict.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]  # the repository root (mlx_rnn/tools/bench/<file>)
RESULT_TAG = "SCALING_RESULT "


def free_ports(n: int) -> int:
    """A port p with p .. p + n - 1 free on 127.0.0.1 (mlx.launch's ring takes one port per rank)."""
    for _ in range(200):
        p = random.randint(20000, 60000)
        socks = []
        try:
            for q in range(p, p + n):
                s = socket.socket()
                s.bind(("127.0.0.1", q))
                socks.append(s)
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port pair on 127.0.0.1")


def launch_cmd(framework: str, ranks: int, worker_args: list[str]) -> list[str]:
    """The command that runs the scaling worker on ``ranks`` processes of ``framework`` (one rank:
    the worker itself; else mlx.launch's ring or torchrun on free local ports)."""
    worker = [sys.executable, "-m", "mlx_rnn.tools.bench.scaling", "--worker", *worker_args]
    if ranks == 1:
        return worker
    if framework == "mlx":
        port = free_ports(ranks)
        return [sys.executable, "-m", "mlx_rnn.tools.launch", "-n", str(ranks), "--backend", "ring",
                "--starting-port", str(port), "--", *worker, "--distributed"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
            "-m", "mlx_rnn.tools.bench.scaling", "--worker", *worker_args, "--distributed"]


def measure_scaling(framework: str = "mlx", ranks=(1, 2), *, hidden_size: int = 128, embed_dim: int = 64,
                    batch_size: int = 16, seq_len: int = 100, steps: int = 20, repeats: int = 2,
                    threads_per_rank: int | None = None, timeout_s: float = 600.0, env: dict | None = None) -> dict:
    """Throughput of LM training with each number of ``ranks`` (see the module docstring).

    ``threads_per_rank``: BLAS/OpenMP threads of each rank (``OMP_NUM_THREADS``,
    ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``); None splits the machine's cores among
    the ranks (1 rank gets them all). On a small or shared machine 1 is the fairer choice:
    PyTorch's intra-op threads on tiny matmuls can cost more than they bring, which
    flatters the multi-rank figure.

    Returns ``{"scaling": [{"ranks", "chars_per_s", "efficiency"}], "framework", "task",
    "per_rank_batch", "seq_len", "hidden_size", "steps", "repeats", "cpu_count", "backend",
    "note"}``. Raises RuntimeError when a run fails or times out.
    """
    worker_args = [framework, "--hidden-size", str(hidden_size), "--embed-dim", str(embed_dim),
                   "--batch-size", str(batch_size), "--seq-len", str(seq_len), "--steps", str(steps)]
    run_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    run_env["PYTHONPATH"] = str(ROOT) + os.pathsep + run_env.get("PYTHONPATH", "")
    best: dict[int, float] = {}
    cores = os.cpu_count() or 1
    threads = {n: threads_per_rank or max(1, cores // n) for n in ranks}  # default: the cores split among ranks
    for _ in range(repeats):
        for n in ranks:  # interleaved, so that a change in the machine's load hits every configuration
            cmd = launch_cmd(framework, n, worker_args)
            n_env = dict(run_env)
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                n_env[var] = (env or {}).get(var, str(threads[n]))  # an explicit env wins
            try:
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=n_env)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"scaling run with {n} ranks timed out after {timeout_s:g} s") from None
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{framework} scaling run with {n} ranks failed (exit {proc.returncode}): "
                                   + failure_line(proc.stderr))
            cps = json.loads(lines[-1][len(RESULT_TAG):])["chars_per_s"]
            best[n] = max(best.get(n, 0.0), cps)
    base = best.get(1)
    rows = [{"ranks": n, "chars_per_s": best[n], "efficiency": (best[n] / (n * base)) if base else None,
             "threads_per_rank": int((env or {}).get("OMP_NUM_THREADS", threads[n]))} for n in ranks]
    return {
        "scaling": rows, "framework": framework, "task": "lm", "per_rank_batch": batch_size, "seq_len": seq_len,
        "hidden_size": hidden_size, "embed_dim": embed_dim, "steps": steps, "repeats": repeats, "cpu_count": cores,
        "backend": ("ring (TCP, 127.0.0.1)" if framework == "mlx" else "gloo (TCP, 127.0.0.1)"),
        "note": (f"weak scaling (per-rank batch fixed), best of {repeats}; all ranks on one machine with "
                 f"{cores} CPU cores" + (" split among the ranks" if threads_per_rank is None else "")
                 + " (threads_per_rank)"
                 + (", so ranks share cores and efficiency is bounded by the cores, not the network"
                    if max(ranks) >= cores else "")),
    }


def failure_line(stderr: str) -> str:
    """The one line of a failed run's stderr that says what went wrong (not the launcher's traceback)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for key in ("error:", "terminate called", "Error:", "Error", "exitcode"):
        hits = [ln for ln in lines if key in ln and not ln.startswith(("File ", "Traceback"))]
        if hits:
            return hits[0][:300]
    return lines[-1][:300] if lines else "no output"


# ----- the worker (one rank) -------------------------------------------------------------------
def _worker(argv) -> int:
    p = argparse.ArgumentParser(prog="bench_scaling --worker")
    p.add_argument("framework", choices=("mlx", "torch"))
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--distributed", action="store_true")
    args = p.parse_args(argv)
    from mlx_rnn.core import distributed
    from mlx_rnn.core.config import make_config
    from mlx_rnn.core.vocab import TEXT8_SYMBOLS

    if args.framework == "mlx":
        from mlx_rnn import train as fw
    else:
        from torch_ref import train as fw
    dist = distributed.init(args.framework, args.distributed, "cpu")
    fw.select_device("cpu")
    cfg = make_config("lm", embed_dim=args.embed_dim, hidden_size=args.hidden_size, batch_size=args.batch_size,
                      seq_len=args.seq_len, epochs=2, dropout=0.0, seed=0)
    n = args.batch_size * dist.world_size * (args.steps + 1) * args.seq_len + 1
    ids = np.random.default_rng(0).integers(0, len(TEXT8_SYMBOLS), size=n).astype(np.int32)
    trainer = fw.Trainer(cfg, ids)
    trainer.train_epoch(0)  # warm-up: compilation, allocation
    res = trainer.train_epoch(1)
    chars = res.steps * args.batch_size * dist.world_size * args.seq_len
    if dist.is_main:
        print(RESULT_TAG + json.dumps({"ranks": dist.world_size, "chars_per_s": chars / res.time_s,
                                       "time_s": res.time_s, "steps": res.steps}), flush=True)
    del trainer  # (its DDP module holds the process group)
    if dist.enabled and args.framework == "torch":
        from torch_ref.parallel import shutdown

        shutdown()  # the group torn down before interpreter exit (see torch_ref.parallel._destroy)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker(argv[1:])
    p = argparse.ArgumentParser(prog="python -m mlx_rnn.tools.bench.scaling",
                                description="LM training throughput with 1 and N data-parallel ranks")
    p.add_argument("--framework", choices=("mlx", "torch"), default="mlx")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads-per-rank", type=int, default=None,
                   help="BLAS/OpenMP threads per rank (default: the cores split among the ranks)")
    args = p.parse_args(argv)
    if 1 not in args.ranks:
        args.ranks = [1, *args.ranks]
    t = time.perf_counter()
    out = measure_scaling(args.framework, tuple(args.ranks), hidden_size=args.hidden_size,
                          batch_size=args.batch_size, seq_len=args.seq_len, steps=args.steps, repeats=args.repeats,
                          threads_per_rank=args.threads_per_rank)
    out["bench_time_s"] = time.perf_counter() - t
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
