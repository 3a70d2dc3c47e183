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
from mlx_rnn.core.config import cell_of
from .layers import Dropout, Embedding
from .gru import GRU
from .lstm import LSTM
from mlx_rnn.core.sampling import choose
from mlx_rnn.core.scoring import SCORE_CHUNK, chunk_bounds, score_sequence
from mlx_rnn.core.vocab import Indexer, check_text, encode_batch


class _Base(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int,
                 dropout: float, out_features: int, cell: str = "lstm", weight_drop: float = 0.0,
                 input_dropout: float | None = None):
        super().__init__()
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
        self.input_dropout = Dropout(dropout if input_dropout is None else input_dropout)

    def recurrent(self, x: mx.array, state=None):
        """Run the LSTM or GRU: ``(output (B, T, H), state)``; state is ``(h, c)`` or ``(h,)``."""
        return (self.lstm if self.cell == "lstm" else self.gru)(x, state)

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

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, cell: str = "lstm", weight_drop: float = 0.0,
                 input_dropout: float | None = None):
        super().__init__(vocab_size, embed_dim, hidden_size, num_layers, dropout, 1, cell, weight_drop,
                         input_dropout)

    def __call__(self, x: mx.array) -> mx.array:
        out, _ = self.recurrent(self.input_dropout(self.embedding(x)))
        return self.output(self.dropout(out[:, -1, :])).squeeze(-1)

    def prefix_logits(self, x: mx.array) -> mx.array:
        """float32 (B, T) logits after every prefix: column t classifies x[:, :t+1].

        The last column equals ``model(x)`` (in eval mode; dropout masks differ in training).
        """
        out, _ = self.recurrent(self.input_dropout(self.embedding(x)))
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

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, cell: str = "lstm", weight_drop: float = 0.0,
                 input_dropout: float | None = None):
        super().__init__(vocab_size, embed_dim, hidden_size, num_layers, dropout, vocab_size, cell, weight_drop,
                         input_dropout)

    def __call__(self, x: mx.array, state=None):
        out, state = self.recurrent(self.input_dropout(self.embedding(x)), state)
        return self.output(self.dropout(out)), state

    def loss(self, x: mx.array, y: mx.array, state=None):
        """Mean next-character cross-entropy (nats per character) and the final state."""
        logits, state = self(x, state)
        return nn.losses.cross_entropy(logits, y, reduction="mean"), state


class RNNClassifier:
    """Trained classifier with the exercise's API.

    Args:
        model: an :class:`RNNClassifierModel` (switched to eval mode).
        vocab: the :class:`~mlx_rnn.core.vocab.Indexer` the model was trained with.
        config: the checkpoint configuration (kept for saving and reporting).
    """

    def __init__(self, model: RNNClassifierModel, vocab: Indexer, config: dict | None = None):
        self.model, self.vocab, self.config = model, vocab, config or {}
        self.model.eval()

    def logits(self, contexts: list[str]) -> np.ndarray:
        """float32 (N,) logits for N contexts (any lengths >= 1; same-length ones batched).

        Raises:
            ValueError: an empty context or a character outside the vocabulary.
        """
        out = np.zeros(len(contexts), dtype=np.float32)
        by_len: dict[int, list[int]] = {}
        for i, c in enumerate(contexts):
            if not c:
                raise ValueError(f"context {i} is empty")
            check_text(self.vocab, c, f"context {i}")
            by_len.setdefault(len(c), []).append(i)
        for _, idx in by_len.items():
            x = mx.array(np.stack([self.vocab.encode(contexts[i]) for i in idx]))
            out[idx] = np.array(self.model(x))
        return out

    def predict_batch(self, contexts: list[str]) -> np.ndarray:
        """int32 (N,) predictions: 1 when a vowel is predicted to follow, else 0."""
        return (self.logits(contexts) >= 0).astype(np.int32)

    def predict(self, context: str) -> int:
        """0 (consonant follows) or 1 (vowel follows) for one context string."""
        return int(self.predict_batch([context])[0])


class RNNLanguageModel:
    """Trained character LM with the exercise's API (natural-log probabilities).

    An empty context means "start of text" and is treated as a single space.
    """

    def __init__(self, model: LMRNNModel, vocab: Indexer, config: dict | None = None):
        self.model, self.vocab, self.config = model, vocab, config or {}
        self.model.eval()
        #: the logits are divided by this before the softmax (:mod:`mlx_rnn.core.calibration`;
        #: fitted on the validation slice after training, 1.0 = the raw model)
        self.calibration_temperature = float(self.config.get("calibration_temperature", 1.0))
        #: symbols per forward pass when scoring (state carried between chunks; :mod:`mlx_rnn.core.scoring`)
        self.score_chunk = SCORE_CHUNK

    def logits_batch(self, texts: list[str]) -> np.ndarray:
        """float32 (N, L, V): raw logits (before calibration) after every prefix of each of N texts
        of the same length L, in one batched pass (each text starts from the zero state).

        Raises:
            ValueError: texts of different lengths, an empty text or an unknown symbol.
        """
        x = encode_batch(self.vocab, texts)
        logits, _ = self.model(mx.array(x))
        return np.array(logits.astype(mx.float32))

    def _chunk_logits(self, ids: np.ndarray):
        """Raw logits mx float32 (n, V) of one sequence, chunk by chunk (:mod:`mlx_rnn.core.scoring`):
        the state is carried and each chunk evaluated, so the lazy graph stays one chunk long."""
        state = None
        for start, stop in chunk_bounds(len(ids), self.score_chunk):
            logits, state = self.model(mx.array(ids[None, start:stop]), state)
            logits = logits[0].astype(mx.float32)
            mx.eval(logits, state)
            yield logits

    def logits_sequence(self, text: str) -> np.ndarray:
        """float32 (len(text), V): raw logits (before calibration) after every prefix text[:i+1]."""
        ids = encode_batch(self.vocab, [text])[0]
        return np.concatenate([np.array(z) for z in self._chunk_logits(ids)])

    def _chunk_log_probs(self, ids: np.ndarray, raw: bool = False):
        """Per chunk ``(log P(next symbol) float32 (n, V), raw logits or None)`` as numpy."""
        for z in self._chunk_logits(ids):
            lp = nn.log_softmax(z / self.calibration_temperature, axis=-1)
            yield np.array(lp), (np.array(z) if raw else None)

    def get_next_char_log_probs(self, context: str) -> np.ndarray:
        """Log probabilities (nats) of every next symbol: float32 (V,), vocabulary order."""
        context = context or " "
        check_text(self.vocab, context, "context")
        for lp, _ in self._chunk_log_probs(self.vocab.encode(context)):
            pass
        return lp[-1]

    def score(self, next_chars: str, context: str, raw: bool = False) -> tuple[float, float]:
        """``(log_prob, raw_log_prob)`` of ``next_chars`` after ``context`` in nats: the calibrated
        figure of :meth:`get_log_prob_sequence` and (``raw``) that of the uncalibrated logits,
        else nan. One chunked pass in bounded memory (:mod:`mlx_rnn.core.scoring`)."""
        return score_sequence(self.vocab, self._chunk_log_probs, next_chars, context, raw)

    def get_log_prob_sequence(self, next_chars: str, context: str) -> float:
        """Sum over i of log P(next_chars[i] | context + next_chars[:i]) in nats.

        Scored in one pass that carries the LSTM state along the text, chunk by chunk.
        """
        return self.score(next_chars, context)[0]

    def sample(self, prime: str = " ", length: int = 200, temperature: float = 1.0,
               top_k: int | None = None, seed: int = 0) -> str:
        """Generate ``length`` symbols after ``prime``, carrying the LSTM state one step at a time.

        ``temperature`` 0 is greedy; ``top_k`` keeps the k most likely symbols. The same
        weights, prime and seed give the same text. Raises ValueError for a prime with
        symbols outside the vocabulary or a negative length.
        """
        prime = prime or " "
        check_text(self.vocab, prime, "prime")
        if length < 0:
            raise ValueError(f"length must be >= 0 (got {length})")
        rng = np.random.default_rng(seed)
        logits, state = self.model(mx.array(self.vocab.encode(prime)[None, :]))
        out = []
        for _ in range(length):
            lp = np.array(nn.log_softmax(logits[0, -1].astype(mx.float32) / self.calibration_temperature))
            idx = choose(lp, temperature, top_k, rng)
            out.append(self.vocab.get_object(idx))
            logits, state = self.model(mx.array([[idx]], dtype=mx.int32), state)
        return "".join(out)


def build_model(config: dict):
    """A fresh model for ``config`` (task, vocab_size, embed_dim, hidden_size, num_layers, dropout,
    cell, weight_drop, input_dropout)."""
    cls = RNNClassifierModel if config["task"] == "classify" else LMRNNModel
    return cls(config["vocab_size"], config["embed_dim"], config["hidden_size"],
               config["num_layers"], config.get("dropout", 0.0), cell_of(config),
               config.get("weight_drop", 0.0), config.get("input_dropout"))


def wrap(model, config: dict):
    """The wrapper (RNNClassifier or RNNLanguageModel) for a trained ``model``."""
    vocab = Indexer(config["vocab"])
    cls = RNNClassifier if config["task"] == "classify" else RNNLanguageModel
    return cls(model, vocab, config)


def load(path, task: str | None = None):
    """Load a checkpoint directory into its wrapper (classifier or LM).

    Raises:
        CheckpointError: missing, corrupt or mismatched checkpoint.
    """
    weights, config = load_checkpoint(path, task)
    model = build_model(config)
    model.load_numpy(weights)
    return wrap(model, config)
