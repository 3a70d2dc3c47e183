"""The 27-symbol text8 vocabulary: a-z then space, indices 0..26.

Framework-neutral: imports neither mlx nor torch.
"""

from __future__ import annotations

import numpy as np

TEXT8_SYMBOLS = "abcdefghijklmnopqrstuvwxyz "
VOWELS = frozenset("aeiou")


class Indexer:
    """Bidirectional map between symbols (single characters) and integer indices.

    Args:
        symbols: the alphabet in index order; each character must be unique.

    Raises:
        ValueError: if ``symbols`` is empty or has a repeated character.
    """

    def __init__(self, symbols: str = TEXT8_SYMBOLS):
        if not symbols:
            raise ValueError("a vocabulary needs at least one symbol")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"vocabulary has repeated symbols: {symbols!r}")
        self.symbols = symbols
        self._index = {ch: i for i, ch in enumerate(symbols)}
        # Lookup table over code points for fast vectorised encoding.
        self._table = np.full(max(map(ord, symbols)) + 1, -1, dtype=np.int32)
        for ch, i in self._index.items():
            self._table[ord(ch)] = i

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    def index_of(self, ch: str) -> int:
        """Index of symbol ``ch``, or -1 if it is not in the vocabulary."""
        return self._index.get(ch, -1)

    def get_object(self, index: int) -> str:
        """Symbol at ``index``. Raises IndexError when out of range."""
        if not 0 <= index < len(self.symbols):
            raise IndexError(f"vocabulary index {index} out of range 0..{len(self.symbols) - 1}")
        return self.symbols[index]

    def first_unknown(self, text: str) -> int:
        """Position of the first character of ``text`` outside the vocabulary, or -1."""
        for pos, ch in enumerate(text):
            if ch not in self._index:
                return pos
        return -1

    def encode(self, text: str) -> np.ndarray:
        """Encode ``text`` as an int32 array of shape (len(text),).

        Raises:
            ValueError: naming the first character outside the vocabulary and its position.
        """
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        if codes.size == 0:
            return np.zeros(0, dtype=np.int32)
        if int(codes.max()) < self._table.size:
            ids = self._table[codes]
            if ids.min() >= 0:
                return ids.astype(np.int32, copy=False)
        pos = self.first_unknown(text)
        raise ValueError(f"character {text[pos]!r} at position {pos} is not in the vocabulary")

    def decode(self, ids) -> str:
        """Decode a sequence of indices back into a string."""
        return "".join(self.symbols[int(i)] for i in ids)


TEXT8 = Indexer(TEXT8_SYMBOLS)


def check_text(vocab: Indexer, text: str, what: str) -> None:
    """Raise ValueError naming ``what``, the first symbol of ``text`` outside ``vocab`` and its position."""
    pos = vocab.first_unknown(text)
    if pos >= 0:
        raise ValueError(f"{what}: character {text[pos]!r} at position {pos} is not in the "
                         f"vocabulary {vocab.symbols!r}")


def encode_batch(vocab: Indexer, texts: list[str]) -> np.ndarray:
    """int32 (N, L) symbol indices of N non-empty texts of one length L.

    Raises:
        ValueError: no texts, an empty text, texts of different lengths or an unknown symbol.
    """
    if not texts or len({len(t) for t in texts}) != 1 or not texts[0]:
        raise ValueError(f"need one or more non-empty texts of one length (got lengths {sorted({len(t) for t in texts})})")
    for i, t in enumerate(texts):
        check_text(vocab, t, f"text {i}")
    return np.stack([vocab.encode(t) for t in texts])
