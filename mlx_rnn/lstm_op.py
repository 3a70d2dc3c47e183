"""A sequence-level LSTM recurrence for MLX with a hand-written backward pass.

This is the Python-level path: on the CPU with float32 the native primitive of
:mod:`mlx_rnn.native` runs the same recipe in C++ (see :mod:`mlx_rnn.recurrence`); this
op serves the GPU, other dtypes and installs without the extension.

Only the recurrent part of an LSTM layer lives here; the caller computes the
input projection for all time steps at once (one matmul):

    xw = x @ W_ih^T + b_ih + b_hh                      (B, T, 4H)

Per step t (gate order i, f, g, o as in ``torch.nn.LSTM``; the formulas are
PyTorch's documented ``nn.LSTM`` equations, Hochreiter & Schmidhuber 1997 with
the forget gate of Gers et al. 2000):

    z_t = xw[:, t] + h_{t-1} @ W_hh^T                  (B, 4H)
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o)
    g = tanh(z_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

``lstm_recurrence`` is an ``mx.custom_function`` whose VJP is the cuDNN
recipe: the forward saves the gate activations a_t = [i, f, g, o], the cell
states c_t and tanh(c_t) for every step; the backward walks t = T-1 .. 0 doing
only elementwise math plus one (B, 4H) x (4H, H) matmul per step (for dh),
then forms dW_hh with ONE (4H, B*T) x (B*T, H) matmul after the loop:

    dc   = dc_{t+1}' + dh * o * (1 - tanh(c_t)^2)
    da   = [dc * g, dc * c_{t-1}, dc * i, dh * tanh(c_t)]
    dz_t = da * [i(1-i), f(1-f), 1-g^2, o(1-o)]        (derivatives from the saved
                                                        activations: no exp/cosh)
    dc_{t-1}' = dc * f
    dh_{t-1}  = dhs[:, t-1] + dz_t @ W_hh
    dW_hh = sum_t dz_t^T h_{t-1} = dZ^T H_prev          (one matmul)
    dxw   = dZ                                          (B, T, 4H)

Speed on the CPU back end (measured with mlx 0.32 on x86-64 Linux). Three
facts shape the implementation:

1. The wheel evaluates exp/tanh/sigmoid at 15-20 ns per element, as slow as
   the recurrent matmul itself at these sizes. On the CPU the float32 gate
   activations therefore use a rational approximation of tanh (Eigen's
   ``generic_fast_tanh_float``: x P(x^2) / Q(x^2), degrees 13/6, clamped to
   |x| <= 7.905; evaluated by Estrin's scheme) with
   sigmoid(x) = (1 + tanh(x / 2)) / 2. |error| <= 5e-7 (tanh) and 3e-7
   (sigmoid) against float64; ``mx.tanh`` itself is off by 1e-7. All four
   gates are one elementwise pass over (B, 4H): [i, f, g, o] = S tanh(S z) + M
   with S = 0.5/1 and M = 0.5/0 on the sigmoid/g blocks.
2. ``mx.compile``'s CPU JIT vectorises a fused kernel only if every input is
   contiguous and no maximum/minimum (NaN checks) is inside: the clamp is
   written |x + k| - |x - k| (= 2 clip(x)), S and M are materialised (B, 4H)
   arrays rather than broadcast vectors, and ``mx.contiguous`` marks where a
   kernel must end (fusion otherwise stops at graph depth 11, possibly at a
   broadcast scalar, which turns the kernel strided). ~1 ns per element.
3. Each primitive costs ~2-5 us of scheduling, so the per-step graph is kept
   small: forward = 1 addmm + 5 small kernels; backward = 1 addmm + 6 small
   kernels + 1 concatenate. The saved activations leave the forward as three
   stacked (T, ...) arrays: a custom function with O(T) outputs makes the
   graph simplification of an outer ``mx.compile`` quadratic in T.

With exact activations (the GPU, other dtypes, ``MLX_RNN_LSTM_ACT=exact``, or
``exact=True``, which the LSTM module passes in evaluation mode) the same graph
uses ``mx.tanh``: the approximation speeds up training only, and a trained model
is scored, sampled and compared with PyTorch with exact activations.
``MLX_RNN_LSTM_ACT`` = ``auto`` (default: approximate for float32 on the CPU) |
``exact`` | ``approx``; it is read when a shape is first traced. Non-finite
pre-activations give NaN (the exact functions would saturate); the cell state is
bounded, |c_t| <= |c_0| + t.

The forward and backward loops are each an ``mx.compile``d function, cached
per input shape (``shapeless=False``), so Python builds the T-step graph once
per shape. Called under ``mx.grad``/``nn.value_and_grad`` *without* an outer
``mx.compile``, MLX skips compilation for traced inputs: the result is the
same but the activations run unfused (about 2x slower for small shapes).
Compile the training step (as docs/design.md asks) to get the fused kernels.
"""

from __future__ import annotations

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)

import mlx.core as mx

from .core import switches

__all__ = ["lstm_recurrence", "lstm_recurrence_reference", "use_approx"]

# ----------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------

# Eigen generic_fast_tanh_float coefficients (Eigen/src/Core/MathFunctionsImpl.h)
_TANH_CLAMP = 7.90531110763549805
_ALPHA = (  # odd numerator, coefficients of x^1, x^3, ..., x^13
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_BETA = (  # even denominator, coefficients of x^0, x^2, x^4, x^6
    4.89352518554385e-03,
    2.26843463243900e-03,
    1.18534705686654e-04,
    1.19825839466702e-06,
)


def _estrin_p(y, y2, y4, a):
    """a[0] + a[1] y + ... + a[6] y^6 by Estrin's scheme (a shallow graph)."""
    s1 = a[0] + a[1] * y
    s2 = a[2] + a[3] * y
    s3 = (a[4] + a[5] * y) + a[6] * y2
    return (s1 + y2 * s2) + y4 * s3


def _estrin_q(y, y2, b):
    """b[0] + b[1] y + b[2] y^2 + b[3] y^3."""
    return (b[0] + b[1] * y) + y2 * (b[2] + b[3] * y)


# With u = 2 clamp(x) = |x + k| - |x - k|:  tanh(x) = u Ps(u^2) / Qs(u^2),
# Ps_j = alpha_j / (2 4^j), Qs_j = beta_j / 4^j (the same rational function).
_ALPHA_HALF = tuple(a / (2.0 * 4.0**j) for j, a in enumerate(_ALPHA))
_BETA_HALF = tuple(b / 4.0**j for j, b in enumerate(_BETA))


def _barrier(x: mx.array) -> mx.array:
    """End a fused elementwise kernel here (no copy when x is contiguous).

    ``mx.compile`` fuses elementwise chains up to depth 11; beyond that it cuts
    the chain at an arbitrary node, and a cut at a broadcast scalar makes the
    whole kernel take the slow, unvectorised strided path. ``mx.contiguous``
    is not fusable, so it places the cut where we want it."""
    return mx.contiguous(x)


def _clamp2(x: mx.array, k: float) -> mx.array:
    """2 * clip(x, -k, k) = |x + k| - |x - k|. mx.clip lowers to maximum and
    minimum, whose NaN checks stop the CPU JIT from vectorising the kernel."""
    return mx.abs(x + k) - mx.abs(x - k)


def _tanh_from_u(u: mx.array) -> mx.array:
    """tanh(x) from u = _clamp2(x, _TANH_CLAMP); graph depth 6 above u."""
    y = u * u
    y2 = y * y
    y4 = y2 * y2
    return _estrin_p(y, y2, y4, _ALPHA_HALF) * (u / _estrin_q(y, y2, _BETA_HALF))


def _tanh_approx(x: mx.array) -> mx.array:
    """tanh(x) by Eigen's rational approximation; |error| <= 5e-7 (float32)
    for |x| < 1e8 (beyond, |x + k| - |x - k| cancels; see _gate_u)."""
    return _tanh_from_u(_clamp2(x, _TANH_CLAMP))


def _gate_u(z: mx.array, s: mx.array) -> mx.array:
    """u = 2 clip(S z, +-k), the input of _tanh_from_u for all four gates.

    v / (1 + 1e-7 |v|) first bounds |v| below 1e7 so that |v + k| - |v - k|
    cannot cancel to 0 for huge |v|; for |v| <= 16 it moves tanh by < 5e-8."""
    v = z * s
    v = v / (1.0 + 1e-7 * mx.abs(v))
    return _clamp2(v, _TANH_CLAMP)


def use_approx(dtype) -> bool:
    """Whether a recurrence of ``dtype`` uses the approximate activations now: float32 on the
    CPU, per ``MLX_RNN_LSTM_ACT`` (see module docstring).

    Raises:
        ValueError: ``MLX_RNN_LSTM_ACT`` is not auto, exact or approx (or another switch is bad:
            :func:`mlx_rnn.core.switches.read`).
    """
    mode = switches.read().lstm_act
    if mode == "exact" or dtype != mx.float32:
        return False  # the coefficients under/overflow in float16/bfloat16
    if mode == "approx":
        return True
    return mx.default_device() == mx.cpu


_GATE_CONSTS: dict = {}


def _gate_constants(B: int, H: int, dtype) -> tuple[mx.array, mx.array]:
    """Materialised (B, 4H) arrays S (0.5 on the i, f, o blocks, 1 on g) and
    M (0.5 on i, f, o, 0 on g), so that [i, f, g, o] = S tanh(S z) + M.

    Full-size and contiguous on purpose: a broadcast (4H,) vector would make
    the fused kernel strided (unvectorised)."""
    key = (B, H, dtype, str(mx.default_device()))
    got = _GATE_CONSTS.get(key)
    if got is None:
        blocks = mx.array([0.5, 0.5, 1.0, 0.5], dtype=dtype)
        s = mx.broadcast_to(blocks[None, :, None], (B, 4, H)).reshape(B, 4 * H)
        s = mx.contiguous(s)
        m = mx.contiguous(mx.where(s == 1.0, 0.0, 0.5).astype(dtype))
        mx.eval(s, m)
        got = _GATE_CONSTS[key] = (s, m)
    return got


# ----------------------------------------------------------------------------
# forward / backward loops (compiled per shape)
# ----------------------------------------------------------------------------


def _forward_loop(xw, h0, c0, w_hh, s, m, approx):
    """Returns hs (B,T,H) and saved = [a (T,B,4H), c (T,B,H), tanh c (T,B,H)]."""
    T = xw.shape[1]
    H = h0.shape[-1]
    w_t = w_hh.T  # (H, 4H) view; the gemm reads it transposed
    h, c = h0, c0
    hs, acts, cs, tcs = [], [], [], []
    for t in range(T):
        z = mx.addmm(xw[:, t], h, w_t)  # (B, 4H) = xw_t + h W_hh^T
        if approx:
            # [i, f, g, o] = S tanh(S z) + M, tanh by the rational approximation;
            # two contiguous, vectorised kernels over (B, 4H)
            u = _barrier(_gate_u(z, s))
            a = _tanh_from_u(u) * s + m
        else:
            a = mx.tanh(z * s) * s + m
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        c = _barrier(f * c + i * g)
        tc = _barrier(_tanh_approx(c)) if approx else mx.tanh(c)
        h = o * tc
        hs.append(h)
        acts.append(a)
        cs.append(c)
        tcs.append(tc)
    # Saved state as 3 stacked (T, ...) arrays, not 3T separate outputs: a
    # custom function with O(T) outputs makes an outer mx.compile's graph
    # simplification quadratic in T (seconds at T=100); stacking costs one copy.
    return mx.stack(hs, axis=1), [mx.stack(acts), mx.stack(cs), mx.stack(tcs)]


def _backward_loop(dhs, dh_T, dc_T, h0, c0, w_hh, hs, saved):
    """Backward recurrence; returns dxw (B,T,4H), dh0, dc0 (B,H), dw_hh (4H,H)."""
    acts, cs, tcs = saved
    B, T, H = hs.shape
    dh = dhs[:, T - 1] + dh_T
    dc = dc_T
    dzs = [None] * T
    for t in range(T - 1, -1, -1):
        a = acts[t]
        i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        tc = tcs[t]
        c_prev = cs[t - 1] if t > 0 else c0
        dc = dc + dh * o * (1.0 - tc * tc)
        dz = mx.concatenate(
            [
                dc * g * i * (1.0 - i),  # dz_i   (sigmoid' = s (1 - s))
                dc * c_prev * f * (1.0 - f),  # dz_f
                dc * i * (1.0 - g * g),  # dz_g   (tanh' = 1 - tanh^2)
                dh * tc * o * (1.0 - o),  # dz_o
            ],
            axis=-1,
        )  # (B, 4H)
        dzs[t] = dz
        dc = dc * f
        if t > 0:
            dh = mx.addmm(dhs[:, t - 1], dz, w_hh)  # dhs_{t-1} + dz W_hh
        else:
            dh = dz @ w_hh
    dxw = mx.stack(dzs, axis=1)  # (B, T, 4H)
    h_prev = mx.concatenate([h0[:, None], hs[:, :-1]], axis=1)  # (B, T, H)
    dw_hh = dxw.reshape(B * T, 4 * H).T @ h_prev.reshape(B * T, H)  # one matmul
    return dxw, dh, dc, dw_hh


_FWD_CACHE: dict = {}
_BWD_CACHE: dict = {}


def _compiled_forward(approx: bool):
    fn = _FWD_CACHE.get(approx)
    if fn is None:
        def fwd(xw, h0, c0, w_hh, s, m):
            return _forward_loop(xw, h0, c0, w_hh, s, m, approx)
        fn = _FWD_CACHE[approx] = mx.compile(fwd)
    return fn


def _compiled_backward():
    fn = _BWD_CACHE.get(0)
    if fn is None:
        fn = _BWD_CACHE[0] = mx.compile(_backward_loop)
    return fn


# ----------------------------------------------------------------------------
# the custom function
# ----------------------------------------------------------------------------


def _make_core(exact: bool):
    """The custom function; ``exact`` forces ``mx.tanh`` whatever MLX_RNN_LSTM_ACT says.

    The backward pass reads the saved activations, so it is the same for both."""
    @mx.custom_function
    def core(xw, h0, c0, w_hh):
        """Primal: (hs, h_T, c_T, saved); saved = [a (T,B,4H), c (T,B,H), tanh c (T,B,H)]."""
        s, m = _gate_constants(xw.shape[0], h0.shape[-1], xw.dtype)
        approx = use_approx(xw.dtype) and not exact
        hs, saved = _compiled_forward(approx)(xw, h0, c0, w_hh, s, m)
        return hs, hs[:, -1], saved[1][-1], saved

    @core.vjp
    def core_vjp(primals, cotangents, outputs):
        xw, h0, c0, w_hh = primals
        dhs, dh_T, dc_T, _ = cotangents
        hs, _, _, saved = outputs
        return _compiled_backward()(dhs, dh_T, dc_T, h0, c0, w_hh, hs, saved)

    return core


_lstm_core = _make_core(exact=False)
_lstm_core_exact = _make_core(exact=True)


def lstm_recurrence(xw: mx.array, h0: mx.array, c0: mx.array, w_hh: mx.array, exact: bool = False):
    """Run the LSTM recurrence over a whole sequence, with a fused custom VJP.

    Args:
        xw: (B, T, 4H) float32, the precomputed input projection
            ``x @ W_ih^T + b_ih + b_hh`` for all steps, gate order i, f, g, o.
        h0, c0: (B, H) float32 initial hidden and cell state.
        w_hh: (4H, H) float32 recurrent weight (PyTorch's ``weight_hh_l{k}``).
        exact: use ``mx.tanh``/sigmoid even where the approximation would be chosen
            (the LSTM module asks for it in evaluation mode, so that scoring and
            sampling match PyTorch to float32 rounding; training keeps the fast path).

    Returns:
        ``(hs, h_T, c_T)``: hs (B, T, H) the hidden state after every step,
        h_T and c_T (B, H) the final states. Differentiable w.r.t. all four
        inputs (hand-written VJP, see the module docstring); usable inside
        ``mx.compile``, ``mx.grad`` and ``nn.value_and_grad``.
    """
    if xw.ndim != 3 or h0.ndim != 2 or c0.ndim != 2 or w_hh.ndim != 2:
        raise ValueError(
            f"lstm_recurrence: expected xw (B,T,4H), h0/c0 (B,H), w_hh (4H,H); got "
            f"{xw.shape}, {h0.shape}, {c0.shape}, {w_hh.shape}"
        )
    B, T, G = xw.shape
    H = h0.shape[-1]
    if G != 4 * H or w_hh.shape != (4 * H, H) or c0.shape != (B, H) or h0.shape[0] != B:
        raise ValueError(
            f"lstm_recurrence: inconsistent shapes xw {xw.shape}, h0 {h0.shape}, "
            f"c0 {c0.shape}, w_hh {w_hh.shape}"
        )
    if T == 0:
        raise ValueError("lstm_recurrence: empty sequence (T == 0)")
    hs, h_T, c_T, _ = (_lstm_core_exact if exact else _lstm_core)(xw, h0, c0, w_hh)
    return hs, h_T, c_T


def lstm_recurrence_reference(xw: mx.array, h0: mx.array, c0: mx.array, w_hh: mx.array,
                              exact: bool = True):
    """The plain per-step loop with exact ``mx.sigmoid``/``mx.tanh`` (always; ``exact`` is
    accepted for a common signature), differentiated by MLX autodiff. Same shapes and return
    value as :func:`lstm_recurrence`; the ground truth its tests compare against."""
    H = h0.shape[-1]
    h, c = h0, c0
    hs = []
    for t in range(xw.shape[1]):
        z = xw[:, t] + h @ w_hh.T
        i = mx.sigmoid(z[:, :H])
        f = mx.sigmoid(z[:, H:2 * H])
        g = mx.tanh(z[:, 2 * H:3 * H])
        o = mx.sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        h = o * mx.tanh(c)
        hs.append(h)
    return mx.stack(hs, axis=1), h, c
