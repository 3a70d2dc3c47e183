"""MLX models and the user-facing wrappers (mirrored by ``torch_ref/models.py``).

- :class:`RNNClassifierModel`: embedding -> LSTM -> linear -> one logit (vowel next?).
- :class:`LMRNNModel`: embedding -> LSTM -> linear -> logits over the vocabulary.
- :class:`RNNClassifier` / :class:`RNNLanguageModel`: string-in, numpy-out wrappers
  with the exercise's API.

Parameter names follow PyTorch (``embedding.weight``, ``lstm.weight_ih_l0``, ...,
``output.weight``, ``output.bias``) so checkpoints load in either framework.
"""

from __future__ import annotations

import numpy as np

from . import device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux)
import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_rnn.core.checkpoint import load_checkpoint
from .layers import Dropout, Embedding, log_softmax
from .gru import GRU
from .lstm import LSTM
from mlx_rnn.core.scoring import chunk_bounds
from mlx_rnn.core.vocab import Indexer
from mlx_rnn.core.config import ModelConfig, RunConfig
from mlx_rnn.core.wrappers import ClassifierWrapper, LanguageModelWrapper


class _Base(nn.Module):
    def __init__(self, config: ModelConfig, out_features: int):
        super().__init__()
        vocab_size, embed_dim, hidden_size, num_layers = (config.vocab_size, config.embed_dim, config.hidden_size,
                                                          config.num_layers)
        cell, dropout, weight_drop = config.cell, config.dropout, config.weight_drop
        self.embedding = Embedding(vocab_size, embed_dim)
        # PyTorch's nn.Embedding draws N(0, 1); MLX's default is N(0, 1/E). Match PyTorch.
        self.embedding.weight = mx.random.normal((vocab_size, embed_dim))
        if cell not in ("lstm", "gru"):
            raise ValueError(f"unknown cell {cell!r} (lstm or gru)")
        self.cell = cell  # the recurrent module is self.lstm or self.gru (PyTorch's names)
        if cell == "lstm":
            self.lstm = LSTM(embed_dim, hidden_size, num_layers, dropout, weight_drop)
        else:
            self.gru = GRU(embed_dim, hidden_size, num_layers, dropout, weight_drop)
        self.output = nn.Linear(hidden_size, out_features)
        self.dropout = Dropout(dropout)
        # dropout on the embedding output (the LSTM's input); None = the same as ``dropout``
        self.input_dropout = Dropout(config.embedding_dropout)

    def recurrent(self, x: mx.array, state=None):
        """Run the LSTM or GRU: ``(output (B, T, H), state)``; state is ``(h, c)`` or ``(h,)``."""
        return (self.lstm if self.cell == "lstm" else self.gru)(x, state)

    def encode(self, ids: mx.array, state=None):
        """Embedding -> dropout -> LSTM or GRU for int ids (B, T): ``(output (B, T, H), state)``.

        In eval mode over more positions than there are symbols (scoring, validation), layer 0's
        input projection is gathered from the table ``embedding.weight @ weight_ih_l0.T``
        (V, gates x H), one row per symbol, instead of one product per position: the same sums,
        and with the default LM a quarter of a scoring batch's matmul FLOPs saved. Training
        drops the embedding's output (dropout), which rules it out.
        """
        if not self.training and ids.size > self.embedding.weight.shape[0]:
            rnn = self.lstm if self.cell == "lstm" else self.gru
            table = self.embedding.weight @ rnn.weight_ih_l0.T
            return rnn(None, state, projected=table[ids])
        return self.recurrent(self.input_dropout(self.embedding(ids)), state)

    def weights(self) -> dict:
        """Parameters as ``{pytorch_name: float32 numpy array}``."""
        return {k: np.array(v, dtype=np.float32) for k, v in tree_flatten(self.parameters())}

    def load_numpy(self, weights: dict) -> None:
        """Load ``{name: numpy array}`` (all names required, shapes checked by MLX)."""
        self.load_weights([(k, mx.array(v)) for k, v in weights.items()], strict=True)
        mx.eval(self.parameters())


class RNNClassifierModel(_Base):
    """Embedding -> LSTM -> linear -> one logit per sequence.

    Call: ``model(x)`` with x int32 (B, T) of symbol indices -> logits float32 (B,);
    predict 1 (vowel) when the logit is >= 0. Dropout (``dropout``) applies to the
    embeddings, between LSTM layers and to the last hidden state, in training only.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, 1)

    def __call__(self, x: mx.array) -> mx.array:
        out, _ = self.encode(x)
        return self.output(self.dropout(out[:, -1, :])).squeeze(-1)

    def prefix_logits(self, x: mx.array) -> mx.array:
        """float32 (B, T) logits after every prefix: column t classifies x[:, :t+1].

        The last column equals ``model(x)`` (in eval mode; dropout masks differ in training).
        """
        out, _ = self.encode(x)
        return self.output(self.dropout(out)).squeeze(-1)

    def loss(self, x: mx.array, y: mx.array, prefix_y: mx.array | None = None,
             prefix_weight: float = 0.0) -> mx.array:
        """Mean binary cross-entropy with logits (nats) per example; y int (B,) of 0/1.

        With ``prefix_y`` float32 (B, T-1) (from :func:`mlx_rnn.core.batching.prefix_labels`: 1 vowel,
        0 consonant, -1 ignored) and ``prefix_weight`` w > 0, adds w times the prefix loss:
        sum over t of BCE(logit after x[:, :t+1], prefix_y[:, t]) over labelled positions,
        divided by B * (T-1), so the total stays a mean over examples.
        """
        y = y.astype(mx.float32)
        if prefix_y is None or prefix_weight == 0:
            return nn.losses.binary_cross_entropy(self(x), y, with_logits=True, reduction="mean")
        logits = self.prefix_logits(x)
        final = nn.losses.binary_cross_entropy(logits[:, -1], y, with_logits=True, reduction="mean")
        known = prefix_y >= 0
        per_pos = nn.losses.binary_cross_entropy(logits[:, :-1], mx.maximum(prefix_y, 0.0), with_logits=True,
                                                 reduction="none")
        return final + prefix_weight * mx.where(known, per_pos, 0.0).sum() / per_pos.size


class LMRNNModel(_Base):
    """Embedding -> LSTM -> linear -> logits over the vocabulary at every step.

    Call: ``model(x, state)`` with x int32 (B, T) and optional state ``(h, c)`` each
    float32 (num_layers, B, H) -> ``(logits float32 (B, T, V), (h_n, c_n))``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.vocab_size)

    def __call__(self, x: mx.array, state=None):
        out, state = self.encode(x, state)
        return self.output(self.dropout(out)), state

    def loss(self, x: mx.array, y: mx.array, state=None):
        """Mean next-character cross-entropy (nats per character) and the final state."""
        logits, state = self(x, state)
        return nn.losses.cross_entropy(logits, y, reduction="mean"), state


class RNNClassifier(ClassifierWrapper):
    """Trained classifier with the exercise's API (:class:`mlx_rnn.core.wrappers.ClassifierWrapper`):
    ``logits``, ``predict_batch``, ``predict``."""

    def _logits_of(self, x: np.ndarray) -> np.ndarray:
        return np.array(self.model(mx.array(x)))


class RNNLanguageModel(LanguageModelWrapper):
    """Trained character LM with the exercise's API (:class:`mlx_rnn.core.wrappers.LanguageModelWrapper`):
    ``get_next_char_log_probs``, ``get_log_prob_sequence``, ``score``, ``logits_batch``,
    ``logits_sequence``, ``sample``."""

    def _logits_of(self, x: np.ndarray) -> np.ndarray:
        logits, _ = self.model(mx.array(x))
        return np.array(logits.astype(mx.float32))

    def _chunk_logits(self, ids: np.ndarray):
        # each chunk evaluated (mx.eval), so the lazy graph stays one chunk long
        state = None
        for start, stop in chunk_bounds(len(ids), self.score_chunk):
            logits, state = self.model(mx.array(ids[None, start:stop]), state)
            logits = logits[0].astype(mx.float32)
            mx.eval(logits, state)
            yield logits

    def _log_probs(self, z: mx.array) -> np.ndarray:
        return np.array(log_softmax(z.astype(mx.float32) / self.calibration_temperature))

    def _numpy(self, z: mx.array) -> np.ndarray:
        return np.array(z)

    def _step(self, ids: np.ndarray, state):
        logits, state = self.model(mx.array(ids[None, :]), state)
        return logits[0, -1], state


def build_model(config: RunConfig):
    """A fresh network for ``config``: its task's class built from ``config.model``."""
    cls = RNNClassifierModel if config.task == "classify" else LMRNNModel
    return cls(config.model)


def wrap(model, config: RunConfig):
    """The wrapper (RNNClassifier or RNNLanguageModel) for a trained ``model``."""
    cls = RNNClassifier if config.task == "classify" else RNNLanguageModel
    return cls(model, Indexer(config.vocab), config)


def load(path, task: str | None = None):
    """Load a checkpoint directory into its wrapper (classifier or LM).

    Raises:
        CheckpointError: missing, corrupt or mismatched checkpoint.
    """
    weights, config = load_checkpoint(path, task)
    model = build_model(config)
    model.load_numpy(weights)
    return wrap(model, config)
