"""The trained-model wrappers' logic, once for both frameworks (numpy only).

``mlx_rnn.models`` and ``torch_ref.models`` each derive ``RNNClassifier`` and
``RNNLanguageModel`` from these classes and supply only the framework's part, a few small
hooks: how a batch of symbol ids (int32 numpy) goes through the network and comes back as
numpy, and how the framework takes a log-softmax. Everything else (batching contexts by
length, checking symbols, chunked scoring with the state carried, calibration, sampling) is
written here once, so the two frameworks cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from .config import RunConfig
from .sampling import choose
from .scoring import SCORE_CHUNK, score_sequence
from .vocab import Indexer, check_text, encode_batch


class ClassifierWrapper:
    """Trained classifier with the exercise's API.

    Args:
        model: the framework's classifier network (switched to eval mode).
        vocab: the :class:`~mlx_rnn.core.vocab.Indexer` the model was trained with.
        config: the run configuration it was trained with (kept for reporting; None: unknown).
    """

    def __init__(self, model, vocab: Indexer, config: RunConfig | None = None):
        self.model, self.vocab, self.config = model, vocab, config
        self.model.eval()

    def _logits_of(self, x: np.ndarray) -> np.ndarray:
        """The framework's forward pass: int32 ids (N, L) -> float32 logits (N,)."""
        raise NotImplementedError

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
            out[idx] = self._logits_of(np.stack([self.vocab.encode(contexts[i]) for i in idx]))
        return out

    def predict_batch(self, contexts: list[str]) -> np.ndarray:
        """int32 (N,) predictions: 1 when a vowel is predicted to follow, else 0."""
        return (self.logits(contexts) >= 0).astype(np.int32)

    def predict(self, context: str) -> int:
        """0 (consonant follows) or 1 (vowel follows) for one context string."""
        return int(self.predict_batch([context])[0])


class LanguageModelWrapper:
    """Trained character LM with the exercise's API (natural-log probabilities).

    An empty context means "start of text" and is treated as a single space. The framework
    supplies :meth:`_logits_of`, :meth:`_chunk_logits`, :meth:`_log_probs`, :meth:`_numpy`
    and :meth:`_step`.
    """

    def __init__(self, model, vocab: Indexer, config: RunConfig | None = None):
        self.model, self.vocab, self.config = model, vocab, config
        self.model.eval()
        #: the logits are divided by this before the softmax (:mod:`mlx_rnn.core.calibration`;
        #: fitted on the validation slice after training, 1.0 = the raw model)
        temperature = config.calibration_temperature if config is not None else None
        self.calibration_temperature = 1.0 if temperature is None else float(temperature)
        #: symbols per forward pass when scoring (state carried between chunks; :mod:`mlx_rnn.core.scoring`)
        self.score_chunk = SCORE_CHUNK

    # ----- the framework's part ----------------------------------------------------------
    def _logits_of(self, x: np.ndarray) -> np.ndarray:
        """int32 ids (N, L) from the zero state -> float32 raw logits (N, L, V)."""
        raise NotImplementedError

    def _chunk_logits(self, ids: np.ndarray):
        """Raw logits, framework float32 (n, V), of one sequence ``ids`` int32 (T,), chunk by
        chunk of :attr:`score_chunk` with the state carried, each chunk evaluated before the next."""
        raise NotImplementedError

    def _log_probs(self, z) -> np.ndarray:
        """log_softmax(z / calibration_temperature) over the last axis, as float32 numpy."""
        raise NotImplementedError

    def _numpy(self, z) -> np.ndarray:
        """A framework float32 array as numpy."""
        raise NotImplementedError

    def _step(self, ids: np.ndarray, state):
        """Run int32 ids (L,) from ``state`` (None: zeros): (logits after the last one (V,), state)."""
        raise NotImplementedError

    # ----- the API -------------------------------------------------------------------------
    def logits_batch(self, texts: list[str]) -> np.ndarray:
        """float32 (N, L, V): raw logits (before calibration) after every prefix of each of N texts
        of the same length L, in one batched pass (each text starts from the zero state).

        Raises:
            ValueError: texts of different lengths, an empty text or an unknown symbol.
        """
        return self._logits_of(encode_batch(self.vocab, texts))

    def logits_sequence(self, text: str) -> np.ndarray:
        """float32 (len(text), V): raw logits (before calibration) after every prefix text[:i+1]."""
        ids = encode_batch(self.vocab, [text])[0]
        return np.concatenate([self._numpy(z) for z in self._chunk_logits(ids)])

    def _chunk_log_probs(self, ids: np.ndarray, raw: bool = False):
        """Per chunk ``(log P(next symbol) float32 (n, V), raw logits or None)`` as numpy."""
        for z in self._chunk_logits(ids):
            yield self._log_probs(z), (self._numpy(z) if raw else None)

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

        Scored in one pass that carries the recurrent state along the text, chunk by chunk.
        """
        return self.score(next_chars, context)[0]

    def sample(self, prime: str = " ", length: int = 200, temperature: float = 1.0,
               top_k: int | None = None, seed: int = 0) -> str:
        """Generate ``length`` symbols after ``prime``, carrying the state one step at a time.

        ``temperature`` 0 is greedy; ``top_k`` keeps the k most likely symbols. The same
        weights, prime and seed give the same text.

        Raises:
            ValueError: a prime with symbols outside the vocabulary or a negative length.
        """
        return "".join(self.sample_stream(prime, length, temperature, top_k, seed))

    def sample_stream(self, prime: str = " ", length: int = 200, temperature: float = 1.0,
                      top_k: int | None = None, seed: int = 0):
        """:meth:`sample` one symbol at a time: an iterator of the ``length`` generated symbols
        (each a str), each yielded as soon as it is drawn (scripts/sample.py prints them so). The
        same symbols as :meth:`sample` for the same arguments.

        Raises:
            ValueError: as :meth:`sample`, when the first symbol is asked for.
        """
        prime = prime or " "
        check_text(self.vocab, prime, "prime")
        if length < 0:
            raise ValueError(f"length must be >= 0 (got {length})")
        rng = np.random.default_rng(seed)
        logits, state = self._step(self.vocab.encode(prime), None)
        for i in range(length):
            idx = choose(self._log_probs(logits), temperature, top_k, rng)
            yield self.vocab.get_object(idx)
            if i + 1 < length:
                logits, state = self._step(np.array([idx], dtype=np.int32), state)
