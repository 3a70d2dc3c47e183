"""The CPU's FMA peak probe (mlx_rnn.native.fma_peak_gflops), the ceiling the benchmark reports
every matrix product's rate against: bad arguments are Python errors, and the chains really run."""

from __future__ import annotations

import pytest

pytest.importorskip("mlx_rnn.device")  # first: preloads OpenBLAS before mlx.core
pytest.importorskip("mlx.core")

from mlx_rnn import native  # noqa: E402

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native extension: {native.unavailable_reason()}")


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": -2}, {"seconds": 0.0}, {"seconds": float("nan")},
                                    {"repeats": 0}])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        native.fma_peak_gflops(**kwargs)


@pytest.mark.parametrize("threads, iterations", [(0, 1000), (1, 0), (2, -5)])
def test_the_extension_refuses_bad_counts(threads, iterations):
    with pytest.raises(ValueError, match="must be >= 1"):
        native.ext().fma_peak_gflops(threads, iterations)


def test_none_where_the_packed_kernels_cannot_run(monkeypatch):
    class NoKernels:
        def packed_gemm_available(self):
            return False

    monkeypatch.setattr(native, "_load", lambda: (NoKernels(), ""))
    assert native.fma_peak_gflops() is None


@pytest.mark.skipif(not (native.available() and native.ext().packed_gemm_available()),
                    reason="the packed kernels (x86-64 with AVX2 and FMA) do not run here")
@pytest.mark.parametrize("threads", [1, 2])
def test_the_chains_run(threads):
    """A rate above 0 and below what any core can do (about 320 GFLOP/s: two 16-float FMA units
    at 5 GHz): a loop the compiler had removed would take no time and give an absurd rate."""
    rate = native.fma_peak_gflops(threads, seconds=0.02, repeats=2)
    assert 0 < rate < 400 * threads
    rate, team = native.ext().fma_peak_gflops(threads, 100_000)
    assert team == threads and 0 < rate < 400 * threads


def test_a_smaller_team_than_asked_gives_none(monkeypatch):
    """A probe on fewer threads than asked (the pool busy, a thread refused) is not the CPU's peak."""
    class OneThread:
        def packed_gemm_available(self):
            return True

        def fma_peak_gflops(self, threads, iterations):
            return 40.0, 1

    monkeypatch.setattr(native, "_load", lambda: (OneThread(), ""))
    assert native.fma_peak_gflops(1) == 40.0
    assert native.fma_peak_gflops(2) is None
