"""The fp32 sgemm rate (GFLOP/s) under MLX, for the benchmark's reports (PyTorch's:
:func:`mlx_rnn.tools.bench.worker.torch_sgemm_gflops`)."""

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

