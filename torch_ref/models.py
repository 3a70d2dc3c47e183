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
from mlx_rnn.core.scoring import chunk_bounds
from mlx_rnn.core.vocab import Indexer
from mlx_rnn.core.config import ModelConfig, RunConfig
from mlx_rnn.core.wrappers import ClassifierWrapper, LanguageModelWrapper

from .device import current_device


def drop_recurrent_weight(w: torch.Tensor, p: float) -> torch.Tensor:
    """DropConnect: zero each weight with probability ``p``, scale the rest by 1 / (1 - p)."""
    return F.dropout(w, p, training=True)


class _Base(nn.Module):
    def __init__(self, config: ModelConfig, out_features: int):
        super().__init__()
        vocab_size, embed_dim, hidden_size, num_layers = (config.vocab_size, config.embed_dim, config.hidden_size,
                                                          config.num_layers)
        cell, dropout, weight_drop = config.cell, config.dropout, config.weight_drop
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
        self.input_dropout = nn.Dropout(config.embedding_dropout)

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

    def encode(self, ids: torch.Tensor, state=None):
        """Embedding -> dropout -> LSTM or GRU for int ids (B, T): ``(output (B, T, H), state)``
        (the MLX twin gathers layer 0's input projection from a per-symbol table in eval mode;
        ``nn.LSTM`` computes its projection itself)."""
        return self.recurrent(self.input_dropout(self.embedding(ids)), state)

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

    def __init__(self, config: ModelConfig):
        super().__init__(config, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.encode(x)
        return self.output(self.dropout(out[:, -1, :])).squeeze(-1)

    def prefix_logits(self, x: torch.Tensor) -> torch.Tensor:
        """float32 (B, T) logits after every prefix; see :meth:`mlx_rnn.models.RNNClassifierModel.prefix_logits`."""
        out, _ = self.encode(x)
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

    def __init__(self, config: ModelConfig):
        super().__init__(config, config.vocab_size)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.encode(x, state)
        return self.output(self.dropout(out)), state

    def loss(self, x: torch.Tensor, y: torch.Tensor, state=None):
        """Mean next-character cross-entropy (nats per character) and the final state."""
        logits, state = self(x, state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), state


class RNNClassifier(ClassifierWrapper):
    """Trained classifier with the exercise's API (mirror of ``mlx_rnn.models.RNNClassifier``)."""

    @torch.no_grad()
    def _logits_of(self, x: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(x.astype(np.int64)).to(self.model.device)).float().cpu().numpy()


class RNNLanguageModel(LanguageModelWrapper):
    """Trained character LM with the exercise's API (mirror of ``mlx_rnn.models.RNNLanguageModel``)."""

    @torch.no_grad()
    def _logits_of(self, x: np.ndarray) -> np.ndarray:
        logits, _ = self.model(torch.from_numpy(x.astype(np.int64)).to(self.model.device))
        return logits.float().cpu().numpy()

    @torch.no_grad()
    def _chunk_logits(self, ids: np.ndarray):
        state = None
        for start, stop in chunk_bounds(len(ids), self.score_chunk):
            x = torch.from_numpy(ids[None, start:stop].astype(np.int64)).to(self.model.device)
            logits, state = self.model(x, state)
            yield logits[0].float().cpu()

    def _log_probs(self, z: torch.Tensor) -> np.ndarray:
        return F.log_softmax(z.float() / self.calibration_temperature, dim=-1).cpu().numpy()

    def _numpy(self, z: torch.Tensor) -> np.ndarray:
        return z.numpy()

    @torch.no_grad()
    def _step(self, ids: np.ndarray, state):
        logits, state = self.model(torch.from_numpy(ids.astype(np.int64)[None, :]).to(self.model.device), state)
        return logits[0, -1], state


def build_model(config: RunConfig):
    """A fresh network for ``config``: its task's class built from ``config.model``."""
    cls = RNNClassifierModel if config.task == "classify" else LMRNNModel
    return cls(config.model)


def wrap(model, config: RunConfig):
    """The wrapper (RNNClassifier or RNNLanguageModel) for a trained ``model``."""
    cls = RNNClassifier if config.task == "classify" else RNNLanguageModel
    return cls(model, Indexer(config.vocab), config)


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
