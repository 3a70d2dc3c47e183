"""The native LSTM's and GRU's packed path (x86-64): a thread team over the recurrent weight
packed once per sequence (mlx_rnn/native/src/packed.h, team.h). Against the single-thread BLAS
path of the same extension and the plain autodiff loop, for team sizes 1-3 and shapes that
leave partial panels (H not a multiple of 32) and partial row blocks (B not a multiple of 12 or 6)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")  # first: preloads OpenBLAS before mlx.core
mx = pytest.importorskip("mlx.core")

from mlx_rnn import native, recurrence  # noqa: E402
from mlx_rnn.lstm_op import lstm_recurrence_reference  # noqa: E402

from mlx_rnn.gru import gru_loop  # noqa: E402
from test_native import (_gru_inputs, _gru_loss, _lstm_inputs, _rel, _weighted_loss,  # noqa: E402
                         assert_projection_inside_agrees)

pytestmark = pytest.mark.skipif(
    not (native.available() and native.ext().packed_gemm_available()),
    reason="the packed kernels need the extension on x86-64 with AVX2 and FMA")

# (B, T, H): T >= 4 (below, the packed path does not run)
SHAPES = [(1, 4, 8), (13, 6, 37), (32, 25, 64), (7, 9, 100), (64, 20, 128), (3, 5, 1)]


@pytest.fixture
def kernels():
    """Set (packed, threads) for a test; restores the defaults afterwards."""
    ext = native.ext()
    threads, packed = ext.get_num_threads(), ext.packed_gemm_enabled()

    def use(on: bool, n: int = 1):
        ext.set_packed_gemm(on)
        ext.set_num_threads(n)

    yield use
    ext.set_packed_gemm(packed)
    ext.set_num_threads(threads)


def _run(args, exact, B, T, H):
    outs = recurrence.lstm_native(*args, exact=exact, save=True)
    grads = mx.grad(_weighted_loss(lambda *a: recurrence.lstm_native(*a, exact=exact), B, T, H),
                    argnums=(0, 1, 2, 3))(*args)
    mx.eval(outs, grads)
    return outs, grads


def _assert_agree(got, blas, ref, names, ref_tol):
    """Forward within 1e-6 of the BLAS path and ref_tol of the reference; every gradient within
    1e-5 relative of both. got, blas, ref: (outputs, gradients)."""
    for o, b, r in zip(got[0], blas[0], ref[0]):
        assert float(mx.abs(o - b).max()) <= 1e-6
        assert float(mx.abs(o - r).max()) <= ref_tol
    for g, b, r, name in zip(got[1], blas[1], ref[1], names):
        assert _rel(g, b) <= 1e-5, name
        assert _rel(g, r) <= 1e-5, name


@pytest.mark.parametrize("B,T,H", SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_packed_matches_blas_path_and_reference(kernels, B, T, H, threads):
    args = _lstm_inputs(B, T, H, seed=B + 3 * T + H)
    kernels(False)
    blas = _run(args, True, B, T, H)
    kernels(True, threads)
    got = _run(args, True, B, T, H)
    ref = (lstm_recurrence_reference(*args),
           mx.grad(_weighted_loss(lstm_recurrence_reference, B, T, H), argnums=(0, 1, 2, 3))(*args))
    _assert_agree(got, blas, ref, ("xw", "h0", "c0", "w_hh"), ref_tol=1e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_training_activations_and_no_saving(kernels, threads):
    """Training mode (rational tanh) and the forward without saved activations (evaluation)."""
    B, T, H = 5, 12, 40
    args = _lstm_inputs(B, T, H, seed=7)
    kernels(False)
    want = [recurrence.lstm_native(*args, exact=e, save=s) for e in (False, True) for s in (False, True)]
    kernels(True, threads)
    got = [recurrence.lstm_native(*args, exact=e, save=s) for e in (False, True) for s in (False, True)]
    for g_outs, w_outs in zip(got, want):
        for g, w in zip(g_outs, w_outs):
            assert float(mx.abs(g - w).max()) <= 1e-6


def test_packed_is_deterministic_for_any_team(kernels):
    """Each unit's sums run in the same order whatever the team: the same bits for 1-3 threads."""
    B, T, H = 9, 10, 70
    args = _lstm_inputs(B, T, H, seed=3)
    results = []
    for n in (1, 2, 3):
        kernels(True, n)
        results.append(_run(args, False, B, T, H))
    for outs, grads in results[1:]:
        for a, b in zip(outs + tuple(grads), results[0][0] + tuple(results[0][1])):
            assert np.array_equal(np.array(a), np.array(b))


def test_packed_is_described(kernels):
    kernels(True, 2)
    assert "packed weights, up to 2 threads" in recurrence.describe()
    kernels(False)
    assert "one BLAS call per step" in recurrence.describe()


def _gru_run(args, exact, save, B, T, H):
    fn = lambda *a: recurrence.gru_native(*a, exact=exact, save=save)  # noqa: E731
    outs = fn(*args)
    grads = mx.grad(_gru_loss(fn, B, T, H), argnums=(0, 1, 2, 3))(*args)
    mx.eval(outs, grads)
    return outs, grads


@pytest.mark.parametrize("B,T,H", [(1, 4, 8), (13, 6, 37), (32, 25, 64), (3, 5, 1)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gru_packed_matches_blas_path_and_loop(kernels, B, T, H, threads):
    args = _gru_inputs(B, T, H, seed=B + T + H)
    kernels(False)
    blas = _gru_run(args, True, True, B, T, H)
    kernels(True, threads)
    got = _gru_run(args, True, True, B, T, H)
    ref = (gru_loop(*args), mx.grad(_gru_loss(gru_loop, B, T, H), argnums=(0, 1, 2, 3))(*args))
    _assert_agree(got, blas, ref, ("xw", "w_hh", "b_hh", "h0"), ref_tol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_gru_packed_training_activations_and_no_saving(kernels, threads):
    B, T, H = 5, 12, 40
    args = _gru_inputs(B, T, H, seed=9)
    kernels(False)
    want = [_gru_run(args, e, s, B, T, H) for e in (False, True) for s in (False, True)]
    kernels(True, threads)
    got = [_gru_run(args, e, s, B, T, H) for e in (False, True) for s in (False, True)]
    for (g_out, g_grads), (w_out, w_grads) in zip(got, want):
        for g, w in zip(g_out, w_out):
            assert float(mx.abs(g - w).max()) <= 1e-6
        for g, w in zip(g_grads, w_grads):
            assert _rel(g, w) <= 1e-5


# (B, T, E, H): partial panels (H = 13, 130), partial row blocks, E past one k chunk (300 > 256);
# (32, 6, 20, 130) has work for a team of up to 4 (5 unit blocks)
PROJECTED = [(4, 7, 5, 13), (6, 20, 32, 40), (2, 5, 300, 33), (32, 6, 20, 130)]


@pytest.mark.parametrize("B,T,E,H", PROJECTED)
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("with_bias", [True, False])
def test_packed_input_projection_for_any_team(kernels, B, T, E, H, threads, with_bias):
    """w_ih= on the packed path (x_t W_ih^T one more panel product per step, each team thread on its
    own unit blocks): the same outputs and gradients as the projection done outside, and the same
    bits for any team size."""
    kernels(True, 1)
    one = assert_projection_inside_agrees(B, T, E, H, save=True, with_bias=with_bias)
    kernels(True, threads)
    team = assert_projection_inside_agrees(B, T, E, H, save=True, with_bias=with_bias)
    for a, b in zip(one[0] + tuple(one[1]), team[0] + tuple(team[1])):
        assert float(mx.abs(a - b).max()) == 0.0
