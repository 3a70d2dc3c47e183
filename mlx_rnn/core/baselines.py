"""The exercise's baselines (framework-neutral, numpy only; used by both frameworks).

- :class:`FrequencyBasedClassifier`: predicts from how often the context's last
  character was followed by a vowel or a consonant in training.
- :class:`UniformLanguageModel`: every symbol has probability 1/V (log 1/27 for text8).
"""

from __future__ import annotations

import numpy as np

from .vocab import TEXT8, Indexer


class FrequencyBasedClassifier:
    """Majority vote on the last character of the context.

    Args:
        consonant_texts, vowel_texts: training windows followed by a consonant / a vowel.
    """

    def __init__(self, consonant_texts: list[str], vowel_texts: list[str]):
        self.consonant_counts: dict[str, int] = {}
        self.vowel_counts: dict[str, int] = {}
        for t in consonant_texts:
            self.consonant_counts[t[-1]] = self.consonant_counts.get(t[-1], 0) + 1
        for t in vowel_texts:
            self.vowel_counts[t[-1]] = self.vowel_counts.get(t[-1], 0) + 1

    def predict(self, context: str) -> int:
        """1 if the last character was followed more often by a vowel than a consonant, else 0."""
        last = context[-1]
        return int(self.vowel_counts.get(last, 0) > self.consonant_counts.get(last, 0))

    def predict_batch(self, contexts: list[str]) -> np.ndarray:
        """int32 (N,) predictions."""
        return np.array([self.predict(c) for c in contexts], dtype=np.int32)


class UniformLanguageModel:
    """Every next symbol equally likely: log P = -log V (nats)."""

    def __init__(self, vocab: Indexer = TEXT8):
        self.vocab = vocab

    def get_next_char_log_probs(self, context: str) -> np.ndarray:
        """float32 (V,), all equal to -log V."""
        return np.full(len(self.vocab), -np.log(len(self.vocab)), dtype=np.float32)

    def get_log_prob_sequence(self, next_chars: str, context: str) -> float:
        """-len(next_chars) * log V."""
        return float(-len(next_chars) * np.log(len(self.vocab)))
