"""Classification from a language model (framework-neutral, through the LM API).

- :func:`zero_shot_predict`: P(next is a vowel) = sum of the LM's probabilities of
  a, e, i, o, u; predict 1 when it is >= 0.5.
- :func:`heldout_windows`: honest classification examples cut from a text the LM
  never trained on (the standard dev windows all lie inside text8-100k.txt).
- :func:`lm_init_weights`: the embedding and recurrent weights of an LM checkpoint,
  to start a classifier from (``--init-from-lm``).
"""

from __future__ import annotations

import numpy as np

from .config import RunConfig
from .data import EXAMPLE_LENGTH
from .vocab import VOWELS, Indexer

def heldout_note(in_lm: int, total: int) -> str:
    """The contamination note after training: how many of the ``total`` standard dev windows occur
    verbatim in the LM's training text (``in_lm``, the count just printed)."""
    how = "all" if in_lm == total else f"{in_lm} of the {total}"
    return ("held-out windows are cut from text8-dev.txt, which is not inside text8-100k.txt; "
            f"{how} standard dev windows occur verbatim in text8-100k.txt, so an LM trained on it "
            f"has seen {'their' if in_lm != 1 else 'its'} answer{'s' if in_lm != 1 else ''}")


def heldout_windows(text: str, length: int = EXAMPLE_LENGTH) -> tuple[list[str], np.ndarray]:
    """Every ``length``-character window of ``text`` followed by a letter, with its label.

    Returns:
        (windows, labels): labels int32 (N,), 1 when the following letter is a vowel.
    """
    windows, labels = [], []
    for i in range(length, len(text)):
        nxt = text[i]
        if nxt == " ":
            continue
        windows.append(text[i - length:i])
        labels.append(int(nxt in VOWELS))
    return windows, np.array(labels, dtype=np.int32)


def vowel_probability(lm, contexts: list[str]) -> np.ndarray:
    """float64 (N,): the LM's probability that the next symbol is a, e, i, o or u."""
    idx = [lm.vocab.index_of(v) for v in sorted(VOWELS)]
    if min(idx) < 0:
        raise ValueError("the LM's vocabulary lacks a lowercase vowel; zero-shot classification needs a-z")
    return np.array([np.exp(lm.get_next_char_log_probs(c).astype(np.float64)[idx]).sum() for c in contexts])


def zero_shot_predict(lm, contexts: list[str]) -> np.ndarray:
    """int32 (N,): 1 when the LM puts probability >= 0.5 on a vowel coming next."""
    return (vowel_probability(lm, contexts) >= 0.5).astype(np.int32)


def lm_init_weights(lm_weights: dict, lm_config: RunConfig, vocab: Indexer) -> dict:
    """The LM's embedding and recurrent tensors (names unchanged) for a classifier.

    Raises:
        ValueError: the LM is not an LM checkpoint or uses another vocabulary.
    """
    if lm_config.task != "lm":
        raise ValueError(f"--init-from-lm needs a language-model checkpoint, got task {lm_config.task!r}")
    if lm_config.vocab != vocab.symbols:
        raise ValueError("--init-from-lm: the LM's vocabulary differs from the classifier's")
    return {k: v for k, v in lm_weights.items() if not k.startswith("output.")}
