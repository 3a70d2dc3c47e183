"""PyTorch twin of ``mlx_rnn/models.py``: same classes, methods and parameter names.

Uses ``torch.nn.LSTM`` (batch_first, its fused kernels), whose parameter names
(``lstm.weight_ih_l0`` ...) are already the checkpoint's names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from mlx_rnn.core.checkpoint import load_checkpoint
from mlx_rnn.core.config import cell_of
from mlx_rnn.core.sampling import choose
from mlx_rnn.core.scoring import SCORE_CHUNK, chunk_bounds, score_sequence
from mlx_rnn.core.vocab import Indexer, check_text, encode_batch

from .device import current_device


def drop_recurrent_weight(w: torch.Tensor, p: float) -> torch.Tensor:
    """DropConnect: zero each weight with probability ``p``, scale the rest by 1 / (1 - p)."""
    return F.dropout(w, p, training=True)


class _Base(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int,
                 dropout: float, out_features: int, cell: str = "lstm", weight_drop: float = 0.0,
                 input_dropout: float | None = None):
        super().__init__()
        self.weight_drop = weight_drop  # DropConnect on weight_hh_l* in training (mlx_rnn.lstm.LSTM)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"unknown cell {cell!r} (lstm or gru)")
        self.cell = cell  # the recurrent module is self.lstm or self.gru (PyTorch's names)
        rnn_cls = nn.LSTM if cell == "lstm" else nn.GRU
        setattr(self, cell, rnn_cls(embed_dim, hidden_size, num_layers, batch_first=True,
                                    dropout=dropout if num_layers > 1 else 0.0))
        self.output = nn.Linear(hidden_size, out_features)
        self.dropout = nn.Dropout(dropout)
        # dropout on the embedding output (the LSTM's input); None = the same as ``dropout``
        self.input_dropout = nn.Dropout(dropout if input_dropout is None else input_dropout)

    def recurrent(self, x: torch.Tensor, state=None):
        """Run the LSTM or GRU: ``(output (B, T, H), state)``; state is ``(h, c)`` or ``(h,)``.

        With ``weight_drop`` > 0 in training, the fused kernel runs on a DropConnect copy of the
        recurrent weights (one mask per call; ``torch.func.functional_call``), as the MLX twin.
        """
        rnn = getattr(self, self.cell)
        arg = state if self.cell == "lstm" or state is None else state[0]
        if self.training and self.weight_drop > 0:
            params = {n: drop_recurrent_weight(w, self.weight_drop) if n.startswith("weight_hh") else w
                      for n, w in rnn.named_parameters()}
            out, new = functional_call(rnn, params, (x, arg))
        else:
            out, new = rnn(x, arg)
        return (out, new) if self.cell == "lstm" else (out, (new,))

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def weights(self) -> dict:
        """Parameters as ``{pytorch_name: float32 numpy array}``."""
        return {k: v.detach().to("cpu", torch.float32).numpy().copy() for k, v in self.state_dict().items()}

    def load_numpy(self, weights: dict) -> None:
        """Load ``{name: numpy array}`` (all names required, shapes checked by PyTorch)."""
        self.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32).copy()) for k, v in weights.items()},
                             strict=True)


class RNNClassifierModel(_Base):
    """Embedding -> LSTM -> linear -> one logit per sequence.

    Call: ``model(x)`` with x int64 (B, T) -> logits float32 (B,).
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, cell: str = "lstm", weight_drop: float = 0.0,
                 input_dropout: float | None = None):
        super().__init__(vocab_size, embed_dim, hidden_size, num_layers, dropout, 1, cell, weight_drop,
                         input_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.recurrent(self.input_dropout(self.embedding(x)))
        return self.output(self.dropout(out[:, -1, :])).squeeze(-1)

    def prefix_logits(self, x: torch.Tensor) -> torch.Tensor:
        """float32 (B, T) logits after every prefix; see :meth:`mlx_rnn.models.RNNClassifierModel.prefix_logits`."""
        out, _ = self.recurrent(self.input_dropout(self.embedding(x)))
        return self.output(self.dropout(out)).squeeze(-1)

    def loss(self, x: torch.Tensor, y: torch.Tensor, prefix_y: torch.Tensor | None = None,
             prefix_weight: float = 0.0) -> torch.Tensor:
        """Mean binary cross-entropy with logits (nats); y (B,) of 0/1; ``prefix_y`` (B, T-1) of
        1/0/-1 adds ``prefix_weight`` x the prefix loss, as :meth:`mlx_rnn.models.RNNClassifierModel.loss`."""
        if prefix_y is None or prefix_weight == 0:
            return F.binary_cross_entropy_with_logits(self(x), y.float())
        logits = self.prefix_logits(x)
        final = F.binary_cross_entropy_with_logits(logits[:, -1], y.float())
        per_pos = F.binary_cross_entropy_with_logits(logits[:, :-1], prefix_y.clamp(min=0.0), reduction="none")
        return final + prefix_weight * torch.where(prefix_y >= 0, per_pos, 0.0).sum() / per_pos.numel()


class LMRNNModel(_Base):
    """Embedding -> LSTM -> linear -> logits over the vocabulary at every step.

    Call: ``model(x, state)`` with x int64 (B, T) and optional ``(h, c)`` each
    (num_layers, B, H) -> ``(logits float32 (B, T, V), (h_n, c_n))``.
    """

    def __init__(self, vocab_size: int, embed_dim: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0, cell: str = "lstm", weight_drop: float = 0.0,
                 input_dropout: float | None = None):
        super().__init__(vocab_size, embed_dim, hidden_size, num_layers, dropout, vocab_size, cell, weight_drop,
                         input_dropout)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.recurrent(self.input_dropout(self.embedding(x)), state)
        return self.output(self.dropout(out)), state

    def loss(self, x: torch.Tensor, y: torch.Tensor, state=None):
        """Mean next-character cross-entropy (nats per character) and the final state."""
        logits, state = self(x, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), state


class RNNClassifier:
    """Trained classifier with the exercise's API (mirror of ``mlx_rnn.models.RNNClassifier``)."""

    def __init__(self, model: RNNClassifierModel, vocab: Indexer, config: dict | None = None):
        self.model, self.vocab, self.config = model, vocab, config or {}
        self.model.eval()

    @torch.no_grad()
    def logits(self, contexts: list[str]) -> np.ndarray:
        """float32 (N,) logits for N contexts (same-length ones batched).

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
            x = torch.from_numpy(np.stack([self.vocab.encode(contexts[i]) for i in idx]).astype(np.int64))
            out[idx] = self.model(x.to(self.model.device)).float().cpu().numpy()
        return out

    def predict_batch(self, contexts: list[str]) -> np.ndarray:
        """int32 (N,) predictions: 1 when a vowel is predicted to follow, else 0."""
        return (self.logits(contexts) >= 0).astype(np.int32)

    def predict(self, context: str) -> int:
        """0 (consonant follows) or 1 (vowel follows) for one context string."""
        return int(self.predict_batch([context])[0])


class RNNLanguageModel:
    """Trained character LM with the exercise's API (mirror of ``mlx_rnn.models.RNNLanguageModel``)."""

    def __init__(self, model: LMRNNModel, vocab: Indexer, config: dict | None = None):
        self.model, self.vocab, self.config = model, vocab, config or {}
        self.model.eval()
        #: the logits are divided by this before the softmax (as ``mlx_rnn.models.RNNLanguageModel``)
        self.calibration_temperature = float(self.config.get("calibration_temperature", 1.0))
        #: symbols per forward pass when scoring (state carried between chunks; :mod:`mlx_rnn.core.scoring`)
        self.score_chunk = SCORE_CHUNK

    @torch.no_grad()
    def logits_batch(self, texts: list[str]) -> np.ndarray:
        """float32 (N, L, V): raw logits of N same-length texts; see ``mlx_rnn.models.RNNLanguageModel.logits_batch``."""
        x = torch.from_numpy(encode_batch(self.vocab, texts).astype(np.int64)).to(self.model.device)
        logits, _ = self.model(x)
        return logits.float().cpu().numpy()

    @torch.no_grad()
    def _chunk_logits(self, ids: np.ndarray):
        """Raw logits float32 (n, V) of one sequence, chunk by chunk with the state carried
        (mirror of ``mlx_rnn.models.RNNLanguageModel._chunk_logits``)."""
        state = None
        for start, stop in chunk_bounds(len(ids), self.score_chunk):
            x = torch.from_numpy(ids[None, start:stop].astype(np.int64)).to(self.model.device)
            logits, state = self.model(x, state)
            yield logits[0].float().cpu()

    def logits_sequence(self, text: str) -> np.ndarray:
        """float32 (len(text), V): raw logits (before calibration) after every prefix text[:i+1]."""
        ids = encode_batch(self.vocab, [text])[0]
        return np.concatenate([z.numpy() for z in self._chunk_logits(ids)])

    def _chunk_log_probs(self, ids: np.ndarray, raw: bool = False):
        """Per chunk ``(log P(next symbol) float32 (n, V), raw logits or None)`` as numpy."""
        for z in self._chunk_logits(ids):
            lp = F.log_softmax(z / self.calibration_temperature, dim=-1)
            yield lp.numpy(), (z.numpy() if raw else None)

    def get_next_char_log_probs(self, context: str) -> np.ndarray:
        """Log probabilities (nats) of every next symbol: float32 (V,), vocabulary order."""
        context = context or " "
        check_text(self.vocab, context, "context")
        for lp, _ in self._chunk_log_probs(self.vocab.encode(context)):
            pass
        return lp[-1]

    def score(self, next_chars: str, context: str, raw: bool = False) -> tuple[float, float]:
        """``(log_prob, raw_log_prob)`` in nats; mirror of ``mlx_rnn.models.RNNLanguageModel.score``."""
        return score_sequence(self.vocab, self._chunk_log_probs, next_chars, context, raw)

    def get_log_prob_sequence(self, next_chars: str, context: str) -> float:
        """Sum over i of log P(next_chars[i] | context + next_chars[:i]) in nats, in one chunked pass."""
        return self.score(next_chars, context)[0]

    @torch.no_grad()
    def sample(self, prime: str = " ", length: int = 200, temperature: float = 1.0,
               top_k: int | None = None, seed: int = 0) -> str:
        """Generate ``length`` symbols after ``prime``; mirror of ``mlx_rnn`` ``RNNLanguageModel.sample``."""
        prime = prime or " "
        check_text(self.vocab, prime, "prime")
        if length < 0:
            raise ValueError(f"length must be >= 0 (got {length})")
        rng = np.random.default_rng(seed)
        dev = self.model.device
        logits, state = self.model(torch.from_numpy(self.vocab.encode(prime).astype(np.int64)[None, :]).to(dev))
        out = []
        for _ in range(length):
            lp = F.log_softmax(logits[0, -1].float() / self.calibration_temperature, dim=-1).cpu().numpy()
            idx = choose(lp, temperature, top_k, rng)
            out.append(self.vocab.get_object(idx))
            logits, state = self.model(torch.tensor([[idx]], dtype=torch.int64, device=dev), state)
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


def load(path, task: str | None = None, device=None):
    """Load a checkpoint directory into its wrapper (classifier or LM) on ``device``.

    Raises:
        CheckpointError: missing, corrupt or mismatched checkpoint.
    """
    weights, config = load_checkpoint(path, task)
    model = build_model(config)
    model.load_numpy(weights)

    model.to(device or current_device())
    return wrap(model, config)
