"""The dataset built from a text: LM train/dev/test texts and the vowel-task windows.

:func:`build_dataset` takes a text over a-z and space (uint8 codes, shape (N,)), splits
it like the standard text8 benchmark (:func:`mlx_rnn.core.corpus.split_bounds`: the first
90 % train, the next 5 % validation, the last 5 % test) and draws, from ``seed``:

* the LM training text: the first 100,000 characters of the train part;
* 5,000 + 5,000 train windows from the train part and 500 + 500 dev windows from the
  validation part: 20 characters whose next character is a consonant / a vowel (a, e,
  i, o, u); windows followed by a space are never used, a window text is used at most
  once per split and no dev window repeats a train window;
* 500-character dev and test texts from the validation and test parts, each starting a word.

A text too short for these sizes gets proportionally fewer (with a note); one too short
to be useful is a DataError. Nothing is written here (see :mod:`.build`). Framework-neutral.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mlx_rnn.core.corpus import SPLIT_FRACTIONS, split_bounds
from mlx_rnn.core.data import CLASSIFY_FILES, EXAMPLE_LENGTH, LM_FILES, DataError
from mlx_rnn.core.vocab import VOWELS

from .text8 import LM_TRAIN_CHARS

TRAIN_PER_CLASS = 5_000
DEV_PER_CLASS = 500
EVAL_TEXT_CHARS = 500
#: Below these a dataset is refused as too small to be useful.
MIN_PER_CLASS = 10
MIN_EVAL_TEXT_CHARS = 50
#: At most one window per this many start positions of a region (keeps windows spread).
WINDOW_SPACING = 8
TEST_TEXT_FILE = "text8-test.txt"

_SPACE = ord(" ")
_IS_VOWEL = np.zeros(256, dtype=bool)
_IS_VOWEL[[ord(c) for c in VOWELS]] = True
_IS_CONSONANT = np.zeros(256, dtype=bool)
_IS_CONSONANT[ord("a"):ord("z") + 1] = True
_IS_CONSONANT &= ~_IS_VOWEL
_EXHAUSTIVE = 4_000_000
_BATCH = 1 << 16


class Window(NamedTuple):
    """One classification example: ``text`` = the 20 characters at ``pos`` of the source."""

    pos: int
    text: str


@dataclass
class Dataset:
    """The built data, before writing.

    Attributes:
        lm_train: the LM training text (``text8-100k.txt``), up to 100,000 characters.
        dev_text / test_text: the 500-character LM dev and test texts.
        dev_text_pos / test_text_pos: where they start in the source.
        train_consonant, train_vowel, dev_consonant, dev_vowel: the windows.
        splits: the source ranges ``[start, stop)`` they were drawn from, by name
            (``"train"``, ``"valid"``, ``"test"``; :func:`mlx_rnn.core.corpus.split_bounds`).
        notes: messages for the user (scaled-down sizes, shortfalls).
    """

    lm_train: str
    dev_text: str
    dev_text_pos: int
    test_text: str
    test_text_pos: int
    train_consonant: list[Window]
    train_vowel: list[Window]
    dev_consonant: list[Window]
    dev_vowel: list[Window]
    splits: dict[str, tuple[int, int]]
    notes: list[str] = field(default_factory=list)

    def files(self) -> dict[str, bytes]:
        """File name -> content: text files without newline, example files one window a line."""
        def lines(ws):
            return "".join(w.text + "\n" for w in ws).encode("ascii")

        return {
            LM_FILES["train"]: self.lm_train.encode("ascii"),
            LM_FILES["dev"]: self.dev_text.encode("ascii"),
            TEST_TEXT_FILE: self.test_text.encode("ascii"),
            CLASSIFY_FILES["train_consonant"]: lines(self.train_consonant),
            CLASSIFY_FILES["train_vowel"]: lines(self.train_vowel),
            CLASSIFY_FILES["dev_consonant"]: lines(self.dev_consonant),
            CLASSIFY_FILES["dev_vowel"]: lines(self.dev_vowel),
        }


def build_dataset(data: np.ndarray, *, seed: int = 0, fractions=SPLIT_FRACTIONS) -> Dataset:
    """Draw the LM texts and classification windows from a text over a-z and space.

    Args:
        data: uint8 array (N,) of ASCII codes, only a-z and space.
        seed: the random seed; the same data, seed and fractions give the same dataset.
        fractions: train/validation/test fractions of N (see ``split_bounds``).

    Returns:
        A :class:`Dataset`. Sizes are the standard ones (5,000 + 5,000 train windows,
        500 + 500 dev, 500-character texts) when the text is long enough; otherwise each
        is scaled to its part of the text (at most one window per 8 start positions,
        texts at most half the part), with a note.

    Raises:
        DataError: the text is too short for at least 10 windows per class and
            50-character dev/test texts, or has too few windows of one class.
    """
    data = np.asarray(data, dtype=np.uint8)
    splits = split_bounds(int(data.size), fractions)
    (tr0, tr1), (va0, va1), (te0, te1) = splits["train"], splits["valid"], splits["test"]
    n_train, n_dev, dev_len, test_len, notes = _sizes(int(data.size), splits, fractions)

    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    dev_pos = _pick_text(data, va0, va1, dev_len, rngs[0])
    test_pos = _pick_text(data, te0, te1, test_len, rngs[1])
    tr_c, tr_v = _draw_windows(data, tr0, tr1, n_train, rngs[2])
    seen = {w.text for w in tr_c} | {w.text for w in tr_v}
    dv_c, dv_v = _draw_windows(data, va0, va1, n_dev, rngs[3], avoid=seen)
    for name, got, want in (("train consonant", tr_c, n_train), ("train vowel", tr_v, n_train),
                            ("dev consonant", dv_c, n_dev), ("dev vowel", dv_v, n_dev)):
        if len(got) < MIN_PER_CLASS:
            raise DataError("<text>", f"found only {len(got)} distinct {name} windows in its "
                                      f"part of the text (need at least {MIN_PER_CLASS})")
        if len(got) < want:
            notes.append(f"note: found only {len(got):,} distinct {name} windows "
                         f"(wanted {want:,})")
    lm_len = min(LM_TRAIN_CHARS, tr1 - tr0)
    return Dataset(
        lm_train=data[tr0:tr0 + lm_len].tobytes().decode("ascii"),
        dev_text=data[dev_pos:dev_pos + dev_len].tobytes().decode("ascii"),
        dev_text_pos=dev_pos,
        test_text=data[test_pos:test_pos + test_len].tobytes().decode("ascii"),
        test_text_pos=test_pos,
        train_consonant=tr_c, train_vowel=tr_v, dev_consonant=dv_c, dev_vowel=dv_v,
        splits=splits, notes=notes)


def _sizes(n: int, splits: dict[str, tuple[int, int]], fractions):
    """(windows per class for train, for dev, dev text length, test text length, notes) for
    a text of ``n`` characters split into ``splits``: the standard sizes, or scaled down."""
    (tr0, tr1), (va0, va1), (te0, te1) = splits["train"], splits["valid"], splits["test"]
    n_train = min(TRAIN_PER_CLASS, max(0, tr1 - tr0 - EXAMPLE_LENGTH) // WINDOW_SPACING)
    n_dev = min(DEV_PER_CLASS, max(0, va1 - va0 - EXAMPLE_LENGTH) // WINDOW_SPACING)
    dev_len = min(EVAL_TEXT_CHARS, (va1 - va0) // 2)
    test_len = min(EVAL_TEXT_CHARS, (te1 - te0) // 2)
    if min(n_train, n_dev) < MIN_PER_CLASS or min(dev_len, test_len) < MIN_EVAL_TEXT_CHARS:
        need = _min_length(fractions)
        raise DataError("<text>", f"has {n:,} characters, too few to build a dataset "
                                  f"(need at least about {need:,})")
    notes = []
    if (n_train, n_dev, dev_len, test_len) != (TRAIN_PER_CLASS, DEV_PER_CLASS,
                                               EVAL_TEXT_CHARS, EVAL_TEXT_CHARS):
        notes.append(f"note: the text has {n:,} characters, too few for the standard sizes; "
                     f"scaled down to {n_train:,}+{n_train:,} train and {n_dev:,}+{n_dev:,} dev "
                     f"windows, {dev_len}-character dev and {test_len}-character test texts")
    return n_train, n_dev, dev_len, test_len, notes


def _min_length(fractions) -> int:
    """Smallest text length that passes :func:`_sizes`'s size checks."""
    need_part = EXAMPLE_LENGTH + MIN_PER_CLASS * WINDOW_SPACING
    fr = tuple(float(f) for f in fractions)
    return int(max(need_part / fr[0], need_part / fr[1],
                   2 * MIN_EVAL_TEXT_CHARS / fr[1], 2 * MIN_EVAL_TEXT_CHARS / fr[2])) + 1


def _pick_text(data: np.ndarray, lo: int, hi: int, length: int, rng) -> int:
    """Start of a ``length``-character slice inside ``[lo, hi)``, at a word start if possible."""
    last = hi - length
    p = int(rng.integers(lo, last + 1))
    region = data[lo:last + 1]
    prev = data[lo - 1:last] if lo > 0 else np.concatenate(([_SPACE], data[:last]))
    starts = np.flatnonzero((region != _SPACE) & (prev == _SPACE)) + lo
    if starts.size == 0:
        return p
    i = int(np.searchsorted(starts, p))
    return int(starts[i]) if i < starts.size else int(starts[-1])


def _candidates(rng, lo: int, count: int, want: int):
    """Random window starts in ``[lo, lo + count)``, in batches.

    A small range is visited exhaustively in a random order; a large one is sampled
    with replacement (duplicates are dropped by the caller), up to a generous cap.
    """
    if count <= _EXHAUSTIVE:
        order = rng.permutation(count) + lo
        for i in range(0, count, _BATCH):
            yield order[i:i + _BATCH]
        return
    drawn, cap = 0, max(50 * want, 4 * _BATCH)
    while drawn < cap:
        yield rng.integers(lo, lo + count, size=_BATCH)
        drawn += _BATCH


def _draw_windows(data: np.ndarray, lo: int, hi: int, per_class: int, rng,
                  avoid: set[str] | frozenset = frozenset()) -> tuple[list[Window], list[Window]]:
    """Up to ``per_class`` consonant and vowel windows, each wholly inside ``[lo, hi)``.

    A window is the 20 characters at ``p``; the character at ``p + 20`` (also inside
    the range) decides its class and must be a letter. Window texts are distinct and
    not in ``avoid``. Returns (consonant windows, vowel windows), in draw order.
    """
    count = hi - lo - EXAMPLE_LENGTH  # starts p with p + 20 < hi
    cons: list[Window] = []
    vows: list[Window] = []
    if count <= 0 or per_class <= 0:
        return cons, vows
    seen = set(avoid)
    for starts in _candidates(rng, lo, count, 2 * per_class):
        nxt = data[starts + EXAMPLE_LENGTH]
        vowel = _IS_VOWEL[nxt]
        keep = vowel | _IS_CONSONANT[nxt]
        for p, v in zip(starts[keep].tolist(), vowel[keep].tolist()):
            target = vows if v else cons
            if len(target) >= per_class:
                continue
            text = data[p:p + EXAMPLE_LENGTH].tobytes().decode("ascii")
            if text in seen:
                continue
            seen.add(text)
            target.append(Window(p, text))
        if len(cons) >= per_class and len(vows) >= per_class:
            break
    return cons, vows
