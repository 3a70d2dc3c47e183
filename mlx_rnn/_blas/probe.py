"""fp32 sgemm rates (GFLOP/s) under MLX and PyTorch, for the benchmark's reports."""

from __future__ import annotations


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else 0.5 * (xs[k - 1] + xs[k])


def measure_sgemm_gflops_mlx(n: int = 1024, repeats: int = 10, warmup: int = 2,
                             device: str = "cpu") -> float:
    """fp32 (n x n) @ (n x n) rate in GFLOP/s (2 n^3 per product) under MLX.

    Each timed product is forced with ``mx.eval`` before the clock stops; the
    warm-up products are not timed. Returns the median over ``repeats``.
    """
    import time

    import mlx.core as mx

    dev = mx.cpu if device == "cpu" else mx.gpu
    with mx.stream(dev):
        a = mx.random.normal((n, n), dtype=mx.float32)
        b = mx.random.normal((n, n), dtype=mx.float32)
        mx.eval(a, b)
        for _ in range(warmup):
            mx.eval(a @ b)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            c = a @ b
            mx.eval(c)
            times.append(time.perf_counter() - t0)
    return 2.0 * n**3 / _median(times) / 1e9


def measure_sgemm_gflops_torch(n: int = 1024, repeats: int = 10, warmup: int = 2,
                               device: str = "cpu") -> float:
    """fp32 (n x n) @ (n x n) rate in GFLOP/s under PyTorch (median of repeats).

    Synchronises CUDA/MPS before stopping the clock; warm-up excluded.
    """
    import time

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
    return 2.0 * n**3 / _median(times) / 1e9
