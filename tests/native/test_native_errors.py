"""The native primitives (mlx_rnn.native) given bad shapes, dtypes, scalars, seeds or devices:
a Python ValueError that names what was expected, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlx_rnn.device")  # first: preloads OpenBLAS before mlx.core
mx = pytest.importorskip("mlx.core")

from mlx_rnn import native  # noqa: E402

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native extension: {native.unavailable_reason()}")


def _lstm_inputs(B, T, H, seed=0):
    """xw (B, T, 4H), h0, c0 (B, H), W_hh (4H, H): float32 arrays of valid shapes."""
    rng = np.random.default_rng(seed)
    shapes = [(B, T, 4 * H), (B, H), (B, H), (4 * H, H)]
    return [mx.array(rng.standard_normal(s).astype(np.float32)) for s in shapes]


# ----- bad input: a Python error, never a crash ------------------------------------------------
def _bad_lstm_calls():
    ok = _lstm_inputs(2, 3, 4)
    xw, h0, c0, w = ok
    ext = native.ext()
    return {
        "w_hh shape": lambda: ext.lstm_forward(xw, w[:5], h0, c0, True, True),
        "h0 batch": lambda: ext.lstm_forward(xw, w, h0[:1], c0, True, True),
        "c0 width": lambda: ext.lstm_forward(xw, w, h0, c0[:, :3], True, True),
        "xw 2-D": lambda: ext.lstm_forward(xw[0], w, h0, c0, True, True),
        "xw not 4H": lambda: ext.lstm_forward(xw[..., :7], w, h0, c0, True, True),
        "empty T": lambda: ext.lstm_forward(xw[:, :0], w, h0, c0, True, True),
        "float16": lambda: ext.lstm_forward(xw.astype(mx.float16), w, h0, c0, True, True),
        "int32": lambda: ext.lstm_forward(xw.astype(mx.int32), w, h0, c0, True, True),
        "w_ih shape": lambda: ext.lstm_forward(xw[..., :5], w, h0, c0, True, True, w_ih=w[:, :4]),
        "w_hh not 4H x H with w_ih": lambda: ext.lstm_forward(xw[..., :5], w[:5], h0, c0, True, True,
                                                             w_ih=w[:, :5]),
        "x 2-D with w_ih": lambda: ext.lstm_forward(xw[0, :, :5], w, h0, c0, True, True, w_ih=w[:, :5]),
        "w_ih float16": lambda: ext.lstm_forward(xw[..., :5], w, h0, c0, True, True,
                                                 w_ih=w[:, :5].astype(mx.float16)),
        "backward x shape": lambda: ext.lstm_backward(h0[:, None], h0, c0, w, h0, c0, h0[:, None],
                                                      xw[:, :1].transpose(1, 0, 2), c0[None], True,
                                                      x=xw[:, :2, :5]),
        "backward gates": lambda: ext.lstm_backward(h0[:, None], h0, c0, w, h0, c0, h0[:, None], xw, c0, True),
        "gru w_hh": lambda: ext.gru_forward(xw[..., :12], w, w[0], h0, True, True),
        "gru b_hh": lambda: ext.gru_forward(xw[..., :12], w[:12], w[0, :3], h0, True, True),
        "adamw shapes": lambda: ext.adamw_update(w, w[:2], w, w, h0[0, 0], h0[0, 0], h0[0, 0], h0[0, 0],
                                                 0.9, 0.999, 1e-8, 0.0, True),
        "adamw lr not scalar": lambda: ext.adamw_update(w, w, w, w, h0, h0[0, 0], h0[0, 0], h0[0, 0],
                                                        0.9, 0.999, 1e-8, 0.0, True),
        "adamw scale not scalar": lambda: ext.adamw_update(w, w, w, w, h0[0, 0], h0[0, 0], h0[0, 0], h0,
                                                           0.9, 0.999, 1e-8, 0.0, True),
        "adamw float16": lambda: ext.adamw_update(*(a.astype(mx.float16) for a in (w, w, w, w)), h0[0, 0],
                                                  h0[0, 0], h0[0, 0], h0[0, 0], 0.9, 0.999, 1e-8, 0.0, True),
        "sum_squares none": lambda: ext.sum_squares([]),
        "sum_squares int32": lambda: ext.sum_squares([w, w.astype(mx.int32)]),
        "mask seed shape": lambda: ext.dropout_mask(mx.array([1, 2, 3], dtype=mx.uint32), [4], 0.5),
        "mask seed float": lambda: ext.dropout_mask(mx.array([1.0, 2.0]), [4], 0.5),
        "mask keep 0": lambda: ext.dropout_mask(mx.array([1, 2], dtype=mx.uint32), [4], 0.0),
        "mask keep 2": lambda: ext.dropout_mask(mx.array([1, 2], dtype=mx.uint32), [4], 2.0),
        "mask negative dim": lambda: ext.dropout_mask(mx.array([1, 2], dtype=mx.uint32), [4, -1], 0.5),
    }


@pytest.mark.parametrize("case", sorted(_bad_lstm_calls()) if native.available() else [])
def test_bad_shapes_and_dtypes_raise_value_error(case):
    with pytest.raises(ValueError) as e:
        out = _bad_lstm_calls()[case]()
        mx.eval(out)
    assert "expected" in str(e.value) or "must be" in str(e.value)


@pytest.mark.gpu
@pytest.mark.skipif(not (mx.metal.is_available() or (hasattr(mx, "cuda") and mx.cuda.is_available())),
                    reason="no MLX GPU back end on this machine")
def test_native_forced_on_a_gpu_stream_is_a_python_error():
    xw, h0, c0, w = _lstm_inputs(1, 2, 3)
    with pytest.raises(ValueError, match="CPU only"):
        native.ext().lstm_forward(xw, w, h0, c0, True, True, stream=mx.gpu)


