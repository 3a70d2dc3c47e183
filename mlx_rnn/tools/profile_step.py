"""Time LSTM forward+backward: MLX custom-VJP op vs MLX autodiff loop vs torch.nn.LSTM.

    python scripts/profile_step.py                       # default shapes
    python scripts/profile_step.py --threads 1           # 1 BLAS/torch thread
    python scripts/profile_step.py --shapes 64,20,32,128,1 --ops

Each shape is B,T,E,H,L (batch, steps, input size, hidden size, layers); the
model is an L-layer LSTM (input projection as one matmul per layer + the
recurrence), the loss sum(hs_last * R) for a fixed random R, and gradients are
taken w.r.t. every weight of every layer. MLX timers stop after ``mx.eval`` of
the loss and all gradients; warm-up (and compilation) is excluded. torch runs
in a child process (plain torch, no OpenBLAS preloaded into it), so the two
libraries' thread pools do not fight. Reported per variant: median wall time
and minimum process CPU time (all threads), both in ms. On a shared machine the
CPU time is the steadier figure; with --threads 1 it is comparable across
frameworks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _timeit(fn, repeats: int, warmup: int = 2) -> dict:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return {"wall_ms": 1e3 * statistics.median(walls), "cpu_ms": 1e3 * min(cpus)}


def _init(B, T, E, H, L, seed=0):
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(H)
    layers = []
    for layer in range(L):
        inp = E if layer == 0 else H
        layers.append({
            "w_ih": rng.uniform(-k, k, (4 * H, inp)).astype(np.float32),
            "w_hh": rng.uniform(-k, k, (4 * H, H)).astype(np.float32),
            "b_ih": rng.uniform(-k, k, (4 * H,)).astype(np.float32),
            "b_hh": rng.uniform(-k, k, (4 * H,)).astype(np.float32),
        })
    x = rng.standard_normal((B, T, E)).astype(np.float32)
    r = rng.standard_normal((B, T, H)).astype(np.float32)
    return layers, x, r


# ---------------------------------------------------------------- MLX side


def time_mlx(layers, x, r, recurrence, compiled: bool, repeats: int) -> dict:
    import mlx.core as mx

    params = [{k: mx.array(v) for k, v in p.items()} for p in layers]
    xm, rm = mx.array(x), mx.array(r)
    B = x.shape[0]
    H = layers[0]["w_hh"].shape[1]

    def loss_fn(params, x, r):
        h = x
        zeros = mx.zeros((B, H), dtype=mx.float32)
        for p in params:
            xw = h @ p["w_ih"].T + (p["b_ih"] + p["b_hh"])
            h, _, _ = recurrence(xw, zeros, zeros, p["w_hh"])
        return (h * r).sum()

    vg = mx.value_and_grad(loss_fn)
    if compiled:
        vg = mx.compile(vg)

    def run():
        loss, grads = vg(params, xm, rm)
        mx.eval(loss, grads)

    return _timeit(run, repeats)


def time_pieces(B, T, H, repeats: int) -> dict:
    """Where the op's time goes, for one layer's bare recurrence."""
    import mlx.core as mx

    from mlx_rnn import lstm_op as L

    rng = np.random.default_rng(1)
    xw = mx.array(rng.standard_normal((B, T, 4 * H)).astype(np.float32))
    h0 = mx.zeros((B, H))
    w = mx.array((rng.standard_normal((4 * H, H)) / np.sqrt(H)).astype(np.float32))
    dhs = mx.array(rng.standard_normal((B, T, H)).astype(np.float32))
    s, m = L._gate_constants(B, H, mx.float32)
    fwd = L._compiled_forward(L.use_approx(mx.float32))
    bwd = L._compiled_backward()
    hs, saved = fwd(xw, h0, h0, w, s, m)
    mx.eval(hs, saved)
    z = mx.zeros((B, H))
    out = {
        "forward": _timeit(lambda: mx.eval(fwd(xw, h0, h0, w, s, m)), repeats),
        "backward": _timeit(lambda: mx.eval(bwd(dhs, z, z, h0, h0, w, hs, saved)), repeats),
    }
    hb = mx.array(rng.standard_normal((B, H)).astype(np.float32))
    zb = mx.array(rng.standard_normal((B, 4 * H)).astype(np.float32))
    out["T_forward_gemms"] = _timeit(lambda: mx.eval([hb @ w.T for _ in range(T)]), repeats)
    out["T_backward_gemms"] = _timeit(lambda: mx.eval([zb @ w for _ in range(T)]), repeats)
    dz = mx.array(rng.standard_normal((B * T, 4 * H)).astype(np.float32))
    hp = mx.array(rng.standard_normal((B * T, H)).astype(np.float32))
    out["dW_gemm"] = _timeit(lambda: mx.eval(dz.T @ hp), repeats)
    ref = mx.compile(lambda xw, w: L.lstm_recurrence_reference(xw, h0, h0, w)[0])
    out["reference_forward_compiled"] = _timeit(lambda: mx.eval(ref(xw, w)), repeats)
    return {k: {kk: round(vv, 2) for kk, vv in v.items()} for k, v in out.items()}


# -------------------------------------------------------------- torch side


def torch_child(spec: dict) -> dict:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    B, T, E, H, L = spec["shape"]
    layers, x, r = _init(B, T, E, H, L)
    m = torch.nn.LSTM(E, H, num_layers=L, batch_first=True)
    with torch.no_grad():
        for k, p in enumerate(layers):
            m.get_parameter(f"weight_ih_l{k}").copy_(torch.from_numpy(p["w_ih"]))
            m.get_parameter(f"weight_hh_l{k}").copy_(torch.from_numpy(p["w_hh"]))
            m.get_parameter(f"bias_ih_l{k}").copy_(torch.from_numpy(p["b_ih"]))
            m.get_parameter(f"bias_hh_l{k}").copy_(torch.from_numpy(p["b_hh"]))
    xt, rt = torch.from_numpy(x), torch.from_numpy(r)

    def run():
        m.zero_grad(set_to_none=True)
        out, _ = m(xt)
        (out * rt).sum().backward()

    res = _timeit(run, spec["repeats"])
    res["threads"] = torch.get_num_threads()
    res["version"] = torch.__version__
    return res


def time_torch(shape, repeats, threads) -> dict | None:
    spec = json.dumps({"shape": shape, "repeats": repeats, "threads": threads})
    root = str(Path(__file__).resolve().parents[2])  # the child finds this package without an install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "mlx_rnn.tools.profile_step", "--torch-child", spec],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"torch timing failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="*", default=["64,20,32,128,1", "32,100,32,512,2"])
    ap.add_argument("--repeats", type=int, default=0, help="0: 10 for small, 3 for large")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS threads for MLX and torch threads (0: library defaults)")
    ap.add_argument("--ops", action="store_true", help="also time the op's pieces")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.torch_child:
        print(json.dumps(torch_child(json.loads(args.torch_child))))
        return 0

    try:
        import mlx_rnn.device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
    except ValueError as e:  # a bad MLX_RNN_BLAS
        print(f"error: {e}", file=sys.stderr)
        return 2
    import mlx_rnn._blas as blas

    import mlx.core as mx

    from mlx_rnn.lstm_op import lstm_recurrence, lstm_recurrence_reference

    mx.set_default_device(mx.cpu)
    if args.threads:
        blas.set_num_threads(args.threads)
    info = blas.blas_info()
    print(blas.describe(info), f"| BLAS threads: {blas.get_num_threads()}")
    print(f"sgemm 1024: MLX {blas.measure_sgemm_gflops_mlx(1024, 5):.1f} GFLOP/s")
    for spec in args.shapes:
        B, T, E, H, L = (int(v) for v in spec.split(","))
        big = B * T * H * H * L > 5e7
        reps = args.repeats or (3 if big else 10)
        layers, x, r = _init(B, T, E, H, L)
        row: dict = {"shape": {"B": B, "T": T, "E": E, "H": H, "L": L}}
        row["mlx_op_compiled"] = time_mlx(layers, x, r, lstm_recurrence, True, reps)
        row["mlx_op_eager"] = time_mlx(layers, x, r, lstm_recurrence, False, reps)
        if not args.no_reference:
            row["mlx_reference_compiled"] = time_mlx(
                layers, x, r, lstm_recurrence_reference, True, reps)
            row["mlx_reference_eager"] = time_mlx(
                layers, x, r, lstm_recurrence_reference, False, reps)
        if not args.no_torch:
            row["torch"] = time_torch([B, T, E, H, L], reps, args.threads)
        if args.ops:
            row["pieces_one_layer"] = time_pieces(B, T, H, reps)
        for k, v in row.items():
            if isinstance(v, dict) and "wall_ms" in v:
                row[k] = {kk: (round(vv, 2) if isinstance(vv, float) else vv)
                          for kk, vv in v.items()}
        print(json.dumps(row))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
