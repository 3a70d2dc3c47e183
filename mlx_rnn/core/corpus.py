"""The full text8 corpus, streamed from disk (``--corpus text8 PATH``). Framework-neutral.

text8 is 10^8 bytes of a-z and space (no newline). The standard split, used by
every published text8 result, is the first 90M characters for training, the next
5M for validation and the last 5M for test. A file of another length (a
generated text8-shaped file in the tests, say) is split by the same fractions:
``[0, round(0.9 n))``, ``[round(0.9 n), round(0.95 n))``, ``[round(0.95 n), n)``,
which for n = 10^8 is exactly the standard split.

Nothing is loaded: the file is an ``np.memmap`` of its bytes (shared through the
page cache by every rank on a machine), and bytes become vocabulary ids through a
256-entry lookup table only for the range being read (a training chunk, an
evaluation chunk, a validation pass over the file in 8 MiB pieces).

Evaluation (:func:`evaluate_split`) reads a split as ``streams`` contiguous
streams scored in parallel, ``chunk`` characters at a time, carrying the LSTM
state along each stream (never character by character, never re-running
prefixes). Stream b starts from a zero state with the character before it as
input (a space for the first stream: the "start of text" convention of the LM
API), so it differs from a single pass over the whole split only in the first
few characters of each stream. In a distributed run the streams are shared out
over the ranks and the sums added up, so every rank gets the same figures.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from pathlib import Path

import numpy as np

from . import backend, distributed
from .data import DataError
from .textread import file_size
from .vocab import TEXT8, Indexer

CORPORA = ("text8",)
TEXT8_CHARS = 100_000_000
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)
SPLITS = ("train", "valid", "test")
_PIECE = 8 << 20  # bytes mapped per piece when scanning the whole file


def split_bounds(n: int, fractions=SPLIT_FRACTIONS) -> dict[str, tuple[int, int]]:
    """``{"train": (0, a), "valid": (a, b), "test": (b, c)}``: consecutive ranges of ``n`` characters.

    ``a = round(n f0)``, ``b = round(n (f0 + f1))``, ``c = min(n, round(n (f0 + f1 + f2)))``, so
    ``c = n`` when the fractions sum to 1; ``n = 10**8`` with the default (0.9, 0.05, 0.05) is
    text8's standard 90M/5M/5M split.

    Raises:
        ValueError: not three fractions, a zero or negative one, or a sum above 1.
    """
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or min(fr) <= 0 or sum(fr) > 1 + 1e-9:
        raise ValueError(f"split fractions must be three positive numbers summing to at most 1, "
                         f"got {fractions}")
    a = round(n * fr[0])
    b = round(n * (fr[0] + fr[1]))
    c = min(n, round(n * (fr[0] + fr[1] + fr[2])))
    return {"train": (0, a), "valid": (a, b), "test": (b, c)}


class CorpusSplit:
    """A contiguous range of a :class:`Text8Corpus`, read on demand as int32 ids.

    Has ``len()``, ``read(start, stop)`` (ids of characters ``[start, stop)`` of the
    split) and ``fingerprint()``; :func:`mlx_rnn.core.batching.lm_shard_streams` trains
    from it without loading it.
    """

    def __init__(self, corpus: "Text8Corpus", name: str, start: int, stop: int):
        self.corpus, self.name, self.start, self.stop = corpus, name, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def read(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start <= stop <= len(self):
            raise IndexError(f"{self.name} split: range [{start}, {stop}) outside [0, {len(self)})")
        return self.corpus.read(self.start + start, self.start + stop)

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise IndexError("a corpus split supports [start:stop] only")
        start, stop, _ = key.indices(len(self))
        return self.read(start, max(start, stop))

    def text(self, start: int = 0, stop: int | None = None) -> str:
        """Characters ``[start, stop)`` as a string (for small pieces)."""
        stop = len(self) if stop is None else stop
        return self.corpus.vocab.decode(self.read(start, stop))

    def fingerprint(self) -> str:
        """sha256 of the split's bytes (read in pieces), for resumable state."""
        h = hashlib.sha256()
        for s in range(self.start, self.stop, _PIECE):
            h.update(np.ascontiguousarray(self.corpus.bytes[s:min(s + _PIECE, self.stop)]).tobytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"CorpusSplit({self.name}, [{self.start}, {self.stop}) of {self.corpus.path})"


class Text8Corpus:
    """A text8-format file (a-z and space only) mapped into memory, with its three splits.

    One trailing newline is ignored. Every byte is checked once, in pieces.

    Raises:
        DataError: missing, empty or unreadable file, a byte outside the vocabulary
            (with its position), or a file too short to split.
    """

    def __init__(self, path, vocab: Indexer = TEXT8):
        self.path = Path(path)
        self.vocab = vocab
        p = self.path
        if not p.exists():
            raise DataError(p, "file not found")
        if p.is_dir():
            raise DataError(p, "is a directory, expected the text8 file")
        size = file_size(p)  # a device or a FIFO is refused (a memory map of one cannot work)
        if size == 0:
            raise DataError(p, "file is empty")
        try:
            mm = np.memmap(p, dtype=np.uint8, mode="r")
        except OSError as e:
            raise DataError(p, f"cannot read ({e.strerror or e})") from None
        n = size - 1 if mm[size - 1] == ord("\n") else size
        self.bytes = mm[:n]
        self.table = np.full(256, -1, dtype=np.int16)
        for ch in vocab.symbols:
            if ord(ch) > 255:
                raise ValueError(f"vocabulary symbol {ch!r} is not a single byte")
            self.table[ord(ch)] = vocab.index_of(ch)
        self._check()
        bounds = split_bounds(n)
        if min(b - a for a, b in bounds.values()) < 2:
            raise DataError(p, f"{n} characters are too few to split into train/valid/test")
        self.splits = {name: CorpusSplit(self, name, *bounds[name]) for name in SPLITS}

    def __len__(self) -> int:
        return len(self.bytes)

    def _check(self) -> None:
        for s in range(0, len(self.bytes), _PIECE):
            ids = self.table[self.bytes[s:s + _PIECE]]
            bad = np.flatnonzero(ids < 0)
            if bad.size:
                pos = s + int(bad[0])
                byte = int(self.bytes[pos])
                what = f"byte 0x{byte:02x}" + (f" ({chr(byte)!r})" if 32 <= byte < 127 else "")
                raise DataError(self.path, f"{what} at offset {pos} is not in the text8 alphabet (a-z and space)",
                                1, pos + 1)

    def read(self, start: int, stop: int) -> np.ndarray:
        """int32 ids of characters ``[start, stop)`` of the file."""
        return self.table[self.bytes[start:stop]].astype(np.int32)

    @property
    def train(self) -> CorpusSplit:
        return self.splits["train"]

    @property
    def valid(self) -> CorpusSplit:
        return self.splits["valid"]

    @property
    def test(self) -> CorpusSplit:
        return self.splits["test"]

    def describe(self) -> dict:
        """For the result JSON: the file, its length and the split ranges."""
        return {"name": "text8", "path": str(self.path), "chars": len(self),
                "standard_split": len(self) == TEXT8_CHARS,
                "splits": {k: [v.start, v.stop] for k, v in self.splits.items()}}


def open_corpus(spec, vocab: Indexer = TEXT8) -> Text8Corpus:
    """The corpus named by ``--corpus NAME PATH`` (``spec`` = ``[NAME, PATH]``).

    Raises:
        ValueError: an unknown corpus name; DataError: a bad file.
    """
    name, path = spec
    if name not in CORPORA:
        raise ValueError(f"--corpus {name}: unknown corpus (known: {', '.join(CORPORA)})")
    return Text8Corpus(path, vocab)


def lm_data(spec, vocab: Indexer = TEXT8) -> dict:
    """The LM task's data dict (as ``taskdata.load_task_data`` returns) for a corpus.

    "train" is the train split (read lazily), "val" and "dev" the validation split
    (model selection and the epoch line), "test" the test split.
    """
    corpus = open_corpus(spec, vocab)
    return {"train": corpus.train, "val": corpus.valid, "dev": corpus.valid, "test": corpus.test,
            "corpus": corpus}


# ----- evaluation -------------------------------------------------------------------------
def evaluate_split(wrapper, split: CorpusSplit, streams: int = 64, chunk: int = 256,
                   dist: distributed.DistInfo | None = None) -> dict:
    """Total log probability of a split, scored in ``streams`` batched streams carrying state.

    Returns ``{"log_prob", "chars", "avg_log_prob", "perplexity", "bits_per_char"}``
    (natural logs), the same on every rank of a distributed run.
    """
    dist = dist or distributed.current()
    n = len(split)
    b_total = max(1, min(streams, n))
    length = n // b_total
    tail = n - b_total * length
    mine = np.arange(dist.rank, b_total, dist.world_size)  # this rank's streams
    score = backend.stream_scorer(wrapper)
    space = wrapper.vocab.index_of(" ")
    total = 0.0
    tail_state = None
    if mine.size:
        starts = mine * length
        state = None
        for s in range(0, length, chunk):
            e = min(s + chunk, length)
            y = np.stack([split.read(int(a) + s, int(a) + e) for a in starts])
            x = np.stack([_inputs(split, int(a) + s, int(a) + e, space) for a in starts])
            sums, state = score(x, y, state)
            total += float(np.sum(sums, dtype=np.float64))
        if tail and mine[-1] == b_total - 1:
            tail_state = tuple(s[:, -1:] for s in state)  # (h, c) of the LSTM, (h,) of the GRU
    if tail and (b_total - 1) % dist.world_size == dist.rank:
        # the characters left over continue the last stream
        a = b_total * length
        for s in range(0, tail, chunk):
            e = min(s + chunk, tail)
            sums, tail_state = score(_inputs(split, a + s, a + e, space)[None, :],
                                     split.read(a + s, a + e)[None, :], tail_state)
            total += float(np.sum(sums, dtype=np.float64))
    log_prob = float(dist.sum_floats([total])[0])
    avg = log_prob / n
    return {"log_prob": log_prob, "chars": n, "avg_log_prob": avg, "perplexity": math.exp(-avg),
            "bits_per_char": -avg / math.log(2.0)}


def _inputs(split: CorpusSplit, start: int, stop: int, space: int) -> np.ndarray:
    """Inputs predicting characters [start, stop): the character before each (a space before the first)."""
    if start > 0:
        return split.read(start - 1, stop - 1)
    return np.concatenate([np.array([space], dtype=np.int32), split.read(0, stop - 1)])


_CACHE: dict = {}


def split_figures(wrapper, split: CorpusSplit) -> dict:
    """:func:`evaluate_split`, remembered for the same wrapper object (validation loss and the
    epoch line use one evaluation). A new wrapper (new weights) is evaluated afresh."""
    key = split.name
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is wrapper and hit[1] is split:
        return hit[2]
    figs = evaluate_split(wrapper, split)
    _CACHE[key] = (weakref.ref(wrapper), split, figs)
    return figs


def lm_corpus_bundle(wrapper, data: dict) -> dict:
    """The LM bundle for a corpus run: the usual keys describe the **test** split; plus
    ``valid_bits_per_char``, ``test_bits_per_char`` and ``corpus`` (file, length, splits)."""
    from .metrics import check_normalizes, check_sane

    valid = split_figures(wrapper, data["val"])
    test = split_figures(wrapper, data["test"])
    out = {"sane": check_sane(wrapper, wrapper.vocab), "normalizes": check_normalizes(wrapper)}
    out.update({k: test[k] for k in ("log_prob", "avg_log_prob", "perplexity", "bits_per_char")})
    out.update(valid_bits_per_char=valid["bits_per_char"], test_bits_per_char=test["bits_per_char"],
               valid_perplexity=valid["perplexity"], test_perplexity=test["perplexity"],
               corpus=data["corpus"].describe())
    return out

