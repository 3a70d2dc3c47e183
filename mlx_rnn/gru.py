"""A GRU for MLX with PyTorch's parameter names, gate order and initialisation.

Batch-first input (B, T, E). Per layer k: ``weight_ih_l{k}`` (3H, in), ``weight_hh_l{k}``
(3H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (3H,), gates ordered (r, z, n) as in
``torch.nn.GRU``. Equations (PyTorch's ``nn.GRU`` documentation)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      # b_hn inside the reset product
    h' = (1 - z) * n + z * h

``b_hn`` is applied at every step, the first one included when no initial state is
given (the zero state still goes through ``W_hn h + b_hn``).
"""

from __future__ import annotations

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.nn as nn

from . import recurrence
from .layers import Dropout, projection
from .lstm import init_recurrent_parameters


class GRU(nn.Module):
    """Multi-layer GRU (our own module, not ``mlx.nn.GRU``).

    Args:
        input_size: E. hidden_size: H. num_layers: stacked layers.
        dropout: on the outputs of every layer but the last, in training only.
        weight_drop: DropConnect on ``weight_hh_l*`` in training, as :class:`mlx_rnn.lstm.LSTM`.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 weight_drop: float = 0.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout_p = dropout
        self.weight_drop = weight_drop
        init_recurrent_parameters(self, input_size, hidden_size, num_layers, gates=3)
        self.inter_dropout = Dropout(dropout)
        self.weight_dropout = Dropout(weight_drop)
        recurrence.requested()  # an unknown MLX_RNN_LSTM_IMPL fails here

    def __call__(self, x: mx.array | None, state=None, projected: mx.array | None = None):
        """Run the GRU.

        Args:
            x: float32 (B, T, E); not read when ``projected`` is given (may be None).
            state: optional ``(h0,)`` with h0 float32 (num_layers, B, H); zeros when None.
            projected: optional float32 (B, T, 3H), layer 0's input projection ``x W_ih^T``
                (bias excluded) computed by the caller (the models' embedding table in eval mode).

        Returns:
            ``(output (B, T, H), (h_n,))`` with h_n float32 (num_layers, B, H).
        """
        B, H = (x if projected is None else projected).shape[0], self.hidden_size
        h_n = []
        for layer in range(self.num_layers):
            w_ih = getattr(self, f"weight_ih_l{layer}")
            w_hh = getattr(self, f"weight_hh_l{layer}")
            if self.weight_drop > 0:
                w_hh = self.weight_dropout(w_hh)  # identity in eval mode
            b_hh = getattr(self, f"bias_hh_l{layer}")
            # projection: the weight gradient comes out row-contiguous (mlx_rnn/layers.py)
            if layer == 0 and projected is not None:
                xw = projected + getattr(self, f"bias_ih_l{layer}")
            else:
                xw = projection(x.reshape(-1, x.shape[-1]), w_ih) + getattr(self, f"bias_ih_l{layer}")
                xw = xw.reshape(B, -1, 3 * H)
            h = mx.zeros((B, H), dtype=xw.dtype) if state is None else state[0][layer]
            if recurrence.path_for(xw.dtype) == "native":
                x, h = recurrence.gru_native(xw, w_hh, b_hh, h, exact=not self.training, save=self.training)
            else:
                x, h = gru_loop(xw, w_hh, b_hh, h)
            h_n.append(h)
            if layer < self.num_layers - 1 and self.dropout_p > 0:
                x = self.inter_dropout(x)
        return x, (mx.stack(h_n),)


def gru_loop(xw: mx.array, w_hh: mx.array, b_hh: mx.array, h: mx.array):
    """The per-step GRU loop in MLX ops (exact activations): xw (B, T, 3H), w_hh (3H, H),
    b_hh (3H,), h (B, H) -> (hs (B, T, H), h_T (B, H)). The op path, differentiated by MLX."""
    H = h.shape[-1]
    outs = []
    for t in range(xw.shape[1]):
        hw = mx.addmm(b_hh, h, w_hh.T)
        xt = xw[:, t]
        r = mx.sigmoid(xt[:, :H] + hw[:, :H])
        z = mx.sigmoid(xt[:, H:2 * H] + hw[:, H:2 * H])
        n = mx.tanh(xt[:, 2 * H:] + r * hw[:, 2 * H:])
        h = (1 - z) * n + z * h
        outs.append(h)
    return mx.stack(outs, axis=1), h
