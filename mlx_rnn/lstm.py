"""An LSTM for MLX with PyTorch's parameter names, gate order and initialisation.

Batch-first input (B, T, E). Parameters per layer k: ``weight_ih_l{k}`` (4H, in),
``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}`` (4H,), ``bias_hh_l{k}`` (4H,), gates
ordered (i, f, g, o) as in ``torch.nn.LSTM``, so a state dict moves between the two
frameworks without renaming. Equations (PyTorch's ``nn.LSTM`` documentation)::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)     f = sigmoid(...)   o = sigmoid(...)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    c' = f * c + i * g        h' = o * tanh(c')

The recurrence runs as chosen by :mod:`mlx_rnn.recurrence`: the native C++ primitive on
the CPU (float32), the Python-level op of :mod:`mlx_rnn.lstm_op` elsewhere.
"""

from __future__ import annotations

import math

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.nn as nn

from . import recurrence
from .layers import Dropout, projection
from .lstm_op import lstm_recurrence, lstm_recurrence_reference


def _op_impl(path: str):
    """The Python-level recurrence for ``path`` ("op" or "reference")."""
    return lstm_recurrence_reference if path == "reference" else lstm_recurrence


def init_recurrent_parameters(module: nn.Module, input_size: int, hidden_size: int, num_layers: int,
                              gates: int) -> None:
    """Give ``module`` PyTorch's recurrent parameters, drawn like PyTorch: U(-1/sqrt(H), 1/sqrt(H)).

    Per layer k: ``weight_ih_l{k}`` (gates*H, in), ``weight_hh_l{k}`` (gates*H, H),
    ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (gates*H,); gates is 4 for the LSTM, 3 for the GRU.
    """
    k = 1.0 / math.sqrt(hidden_size)
    for layer in range(num_layers):
        inp = input_size if layer == 0 else hidden_size
        setattr(module, f"weight_ih_l{layer}", mx.random.uniform(-k, k, (gates * hidden_size, inp)))
        setattr(module, f"weight_hh_l{layer}", mx.random.uniform(-k, k, (gates * hidden_size, hidden_size)))
        setattr(module, f"bias_ih_l{layer}", mx.random.uniform(-k, k, (gates * hidden_size,)))
        setattr(module, f"bias_hh_l{layer}", mx.random.uniform(-k, k, (gates * hidden_size,)))


class LSTM(nn.Module):
    """Multi-layer LSTM (our own module, not ``mlx.nn.LSTM``).

    Args:
        input_size: E, features per input step.
        hidden_size: H.
        num_layers: stacked layers; layer k > 0 takes layer k-1's hidden states.
        dropout: dropout probability on the outputs of every layer but the last
            (as ``torch.nn.LSTM``), applied only in training mode.
        weight_drop: DropConnect probability on the recurrent weights ``weight_hh_l*``
            in training mode: one mask per call, shared by every time step and sequence
            (the weight-dropped LSTM of Merity et al. 2018, "Regularizing and Optimizing
            LSTM Language Models"); kept weights are scaled by 1 / (1 - weight_drop).

    Parameters are drawn from U(-1/sqrt(H), 1/sqrt(H)) like PyTorch.
    """

    CHUNK = 128  # longest sequence handed to the unrolled recurrence at once

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 weight_drop: float = 0.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout_p = dropout
        self.weight_drop = weight_drop
        init_recurrent_parameters(self, input_size, hidden_size, num_layers, gates=4)
        self.inter_dropout = Dropout(dropout)
        self.weight_dropout = Dropout(weight_drop)
        recurrence.requested()  # an unknown MLX_RNN_LSTM_IMPL fails here, not mid-training

    def __call__(self, x: mx.array | None, state=None, projected: mx.array | None = None):
        """Run the LSTM over a batch of sequences.

        Args:
            x: float32 (B, T, E); not read when ``projected`` is given (may be None).
            state: optional ``(h0, c0)``, each float32 (num_layers, B, H); zeros when None.
            projected: optional float32 (B, T, 4H), layer 0's input projection ``x W_ih^T``
                (bias excluded) computed by the caller (the models' embedding table in eval mode).

        Returns:
            ``(output, (h_n, c_n))``: output float32 (B, T, H), the top layer's hidden
            state at every step; h_n and c_n float32 (num_layers, B, H), the final states.
        """
        first = x if projected is None else projected
        B = first.shape[0]
        H = self.hidden_size
        if state is None:
            zeros = mx.zeros((B, H), dtype=first.dtype)
            h0s = c0s = [zeros] * self.num_layers
        else:
            h0s = [state[0][i] for i in range(self.num_layers)]
            c0s = [state[1][i] for i in range(self.num_layers)]
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            w_ih = getattr(self, f"weight_ih_l{layer}")
            w_hh = getattr(self, f"weight_hh_l{layer}")
            if self.weight_drop > 0:
                w_hh = self.weight_dropout(w_hh)  # identity in eval mode
            bias = getattr(self, f"bias_ih_l{layer}") + getattr(self, f"bias_hh_l{layer}")
            x, h_t, c_t = self._layer(x, w_ih, bias, h0s[layer], c0s[layer], w_hh,
                                      projected if layer == 0 else None)
            h_n.append(h_t)
            c_n.append(c_t)
            if layer < self.num_layers - 1 and self.dropout_p > 0:
                x = self.inter_dropout(x)
        return x, (mx.stack(h_n), mx.stack(c_n))

    def _layer(self, x, w_ih, bias, h, c, w_hh, xw=None):
        """One layer over x (B, T, in): the input projection xw = x W_ih^T + bias, then the
        recurrence by the path :mod:`mlx_rnn.recurrence` picks (``xw`` given: that projection,
        bias excluded, and x unread).

        xw comes from one matmul for all steps, whose weight gradient comes out row-contiguous
        (``layers.projection``). Native: one primitive for any T, which adds the bias itself; for
        an input narrower than the hidden state (E < H: the classifier's 32 against 128) it also
        computes x W_ih^T, one panel product per step beside h W_hh^T, instead of a BLAS call
        that runs slowly at so small a K plus a (B, T, 4H) array written and read back
        (measured: the default classifier step 5-12 % faster; for E >= H, as the LM's 512, the
        one large product is faster). The Python-level op is unrolled over time, so one very
        long sequence (scoring a whole text) would build a huge graph: it runs in chunks of
        ``CHUNK`` steps carrying (h, c). Equal results.
        """
        H = self.hidden_size
        exact = not self.training  # approximate activations speed up training only
        if (xw is None and x.shape[-1] < H and x.dtype == w_ih.dtype
                and recurrence.path_for(x.dtype) == "native"):  # a narrow input: projected inside
            return recurrence.lstm_native(x, h, c, w_hh, exact=exact, save=self.training, bias=bias, w_ih=w_ih)
        if xw is None:
            xw = projection(x.reshape(-1, x.shape[-1]), w_ih).reshape(x.shape[0], x.shape[1], 4 * H)
        path = recurrence.path_for(xw.dtype)
        if path == "native":
            return recurrence.lstm_native(xw, h, c, w_hh, exact=exact, save=self.training, bias=bias)
        T = xw.shape[1]
        xw = xw + bias
        impl = _op_impl(path)
        if T <= self.CHUNK:
            return impl(xw, h, c, w_hh, exact=exact)
        outs = []
        for s in range(0, T, self.CHUNK):
            hs, h, c = impl(xw[:, s:s + self.CHUNK], h, c, w_hh, exact=exact)
            outs.append(hs)
        return mx.concatenate(outs, axis=1), h, c
