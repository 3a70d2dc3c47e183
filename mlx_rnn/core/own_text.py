"""Train the language model on your own text: ``--train-text FILE`` (and ``--dev-text FILE``).

Framework-neutral. Any UTF-8 text (capitals, punctuation, newlines, any script) trains
the LM with an alphabet of its own (``--vocab corpus``, the default with ``--train-text``):
every symbol of the training file, plus a space, the LM's start-of-text context
(docs/design.md). The dev text is ``--dev-text FILE`` when given, else a held-out tail of the
training text (the last 10 %, at most 50,000 characters), which is never trained on.
As with the text8 files, model selection uses validation blocks carved out of the
training part (``--val-fraction``), never the dev text.

The checkpoint's ``config.json`` records ``train_text``, ``dev_text`` (null: the tail)
and ``dev_tail_chars``, so that ``--resume`` reads the same text and
``scripts/evaluate.py`` without ``--text`` scores the same dev text.

Any size: the text is read in pieces (:mod:`mlx_rnn.core.textread`): one pass finds its
alphabet (``--vocab corpus``), one checks and encodes it into a file of one byte per symbol
in the checkpoint directory (:mod:`mlx_rnn.core.textcache`, reused by ``--resume``), and the
trainers read each batch from that file. Before a byte is read, a file that is not a regular
file (a device, a FIFO) is refused, and so is a text whose encoded form cannot fit on disk or
whose validation blocks cannot fit in memory; a read longer than a few seconds prints progress.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import textcache
from .config import RunConfig
from .data import DataError
from .memory import GB, check_fits
from .taskdata import validation_ranges
from .textread import ReadProgress, checked_pieces, file_size, id_dtype, text_symbols
from .vocab import Indexer

DEV_TAIL_FRACTION, DEV_TAIL_MAX = 0.10, 50_000
#: fewer characters than this cannot give a held-out tail and a training part
MIN_CHARS = 20
START = " "  # the LM's start-of-text context


def text_alphabet(path, progress=None) -> str:
    """The sorted symbols of a training text (read in pieces, as every text is), with a space
    added when the text has none. Raises DataError for a missing, empty, non-UTF-8 or not regular file."""
    return "".join(sorted(set(text_symbols(path, progress)[0]) | {START}))


def dev_tail_chars(n: int) -> int:
    """Characters held out as the dev tail of a text of ``n``: 10 %, at most DEV_TAIL_MAX, at least 1."""
    return min(DEV_TAIL_MAX, max(1, round(n * DEV_TAIL_FRACTION)))


def split_dev_tail(text: str) -> tuple[str, str]:
    """(training part, dev tail): the last 10 % of ``text``, at most DEV_TAIL_MAX characters."""
    n = dev_tail_chars(len(text))
    return text[:-n], text[-n:]


def _char_width(symbols: str) -> int:
    """Bytes per character of a Python string over ``symbols`` (1, 2 or 4)."""
    top = max(map(ord, symbols))
    return 1 if top < 256 else 2 if top < 65536 else 4


def resident_bytes(chars: int, symbols: str | None, val_fraction: float, dev_chars: int | None = None) -> int:
    """Memory the data of a text of ``chars`` characters hold during training: the validation
    blocks and the dev text as strings (the encoded text stays on disk and is read per batch).
    ``symbols`` None (alphabet not known yet): one byte a character, a bound when ``chars`` is
    the file's size (a character of a wider string takes at least as many bytes in UTF-8)."""
    width = _char_width(symbols) if symbols else 1
    return int(chars * val_fraction * width) + (dev_tail_chars(chars) if dev_chars is None else dev_chars) * width


def check_room(cfg: RunConfig, path: Path, chars: int, symbols: str | None, cache_dir: Path, val_fraction: float) -> None:
    """Refuse (one line) a text whose encoded form cannot fit on disk in ``cache_dir`` or whose
    validation blocks and model cannot fit in memory (:func:`mlx_rnn.core.memory.check_fits`),
    before it is read.
    ``chars``: its characters, or its size in bytes as a bound before the alphabet is known."""
    need = chars * (id_dtype(len(symbols)).itemsize if symbols else 1)
    free = textcache.disk_free(cache_dir)
    if free is not None and need > free:
        raise DataError(path, f"no room to encode it: its encoded form needs about {need / GB:,.1f} GB in "
                              f"{cache_dir}, which has {free / GB:,.1f} GB free (free some space, or save the run "
                              "elsewhere with --save DIR; a run without one uses TMPDIR)")
    check_fits("lm", cfg, resident_bytes(chars, symbols, val_fraction),
               f"the validation blocks of {path.name}")


def read_texts(cfg: RunConfig, vocab: Indexer, save_dir: Path | None = None, progress: ReadProgress | None = None) -> dict:
    """The encoded training text and the dev text of a ``--train-text`` run with alphabet ``vocab``
    (``progress``: called while reading, :class:`mlx_rnn.core.textread.ReadProgress`).

    Returns:
        ``{"text": EncodedText, "dev": str or None}``; dev None: the tail of the text.

    Raises:
        DataError: a bad file, a text too short to hold out a dev tail, a dev text with a symbol
            outside the training text's alphabet (file:line:col), or no room to encode it.
    """
    train_path, dev_path = Path(cfg.train_text), cfg.dev_text
    cache_dir, created = textcache.cache_dir_for(save_dir)
    try:
        text = textcache.encode(train_path, vocab.symbols, cfg.normalize, cache_dir, created, progress)
    except BaseException:
        textcache.remove(created)
        raise
    try:
        if dev_path is None:
            if len(text) < MIN_CHARS:
                raise DataError(train_path, f"text of {len(text)} characters is too short to train on and hold out "
                                            f"a dev tail (at least {MIN_CHARS}; or give --dev-text FILE)")
            return {"text": text, "dev": None}
        return {"text": text, "dev": _read_dev(dev_path, vocab, cfg, train_path)}
    except BaseException:
        text.discard()
        raise


def _read_dev(dev_path, vocab: Indexer, cfg: RunConfig, train_path: Path) -> str:
    """The ``--dev-text`` file, its symbol errors naming the training text's alphabet."""
    try:
        return "".join(piece for piece, _ in checked_pieces(dev_path, vocab.symbols, cfg.normalize))
    except DataError as e:
        if "not in the vocabulary" not in e.cause:
            raise
        raise DataError(e.path, e.cause.split(" (use --normalize")[0].replace(
            "is not in the vocabulary", f"is not in the alphabet of --train-text {train_path.name} "
                                        f"({len(vocab)} symbols)"), e.line, e.col) from None


def lm_data(cfg: RunConfig, resumed: bool, val_fraction: float, save_dir: Path | None = None,
            progress: bool = False) -> tuple[dict, RunConfig]:
    """The LM's data for the trainer, as :func:`mlx_rnn.core.taskdata.load_task_data` returns it,
    with "train" a :class:`~mlx_rnn.core.textcache.TextSegments` read from the encoded text and
    "text_cache" the :class:`~mlx_rnn.core.textcache.EncodedText` (``discard()`` it when the run
    fails before training), and ``cfg`` with what the text settles: its alphabet (``--vocab
    corpus``, a new run) and ``dev_tail_chars``.

    ``save_dir``: the run's checkpoint directory (the encoded text goes to its ``text-cache/``;
    None: a temporary directory). ``progress``: print progress lines while reading.

    Raises:
        DataError: a bad text (:func:`read_texts`), a file that is not a regular file, or one
            too large for this machine (:func:`check_room`), before it is read.
    """
    path = Path(cfg.train_text)
    size = file_size(path)  # a device or a FIFO is refused before it is opened
    if cfg.dev_text:
        file_size(cfg.dev_text)
    where = Path(save_dir) / textcache.CACHE_DIR if save_dir is not None else textcache.temp_root()
    passes = []

    def reader(what: str) -> ReadProgress:
        passes.append(ReadProgress(f"[lm] reading {path.name} ({what})", size, progress))
        return passes[-1]

    if cfg.vocab_kind == "corpus" and not resumed:
        check_room(cfg, path, size, None, where, val_fraction)  # a bound: no more characters than bytes
        symbols = text_alphabet(path, reader("finding its alphabet"))
        cfg = cfg.replace(vocab=symbols, vocab_size=len(symbols))
    check_room(cfg, path, size, cfg.vocab, where, val_fraction)
    vocab = Indexer(cfg.vocab)
    texts = read_texts(cfg, vocab, save_dir, reader("checking and encoding it"))
    text = texts["text"]
    n = len(text)
    body = n if texts["dev"] is not None else n - dev_tail_chars(n)
    dev = texts["dev"] if texts["dev"] is not None else text.text(body, n)
    cfg = cfg.replace(dev_tail_chars=None if cfg.dev_text else len(dev))
    val = validation_ranges(body, val_fraction)
    train_ranges = [(a, b) for a, b in zip([0] + [e for _, e in val], [s for s, _ in val] + [body])]
    if any(p.printed for p in passes):  # a large text: say what became of it
        item = text.dtype.itemsize
        print(f"[lm] {path.name}: {n:,} characters, {len(vocab)} symbols, read in {passes[0].elapsed():.0f} s; "
              f"encoded in {where if save_dir is not None else text.path.parent} "
              f"({item} byte{'s' if item > 1 else ''} a symbol)",
              file=sys.stderr, flush=True)
    return {"train": textcache.TextSegments(text, train_ranges), "val": [text.text(a, b) for a, b in val],
            "dev": dev, "text_cache": text,
            "resident_bytes": resident_bytes(n, vocab.symbols, val_fraction, len(dev))}, cfg


def default_dev_text(config: RunConfig, checkpoint_dir=None) -> tuple[str, Path] | None:
    """For ``scripts/evaluate.py`` and ``compare.py`` without ``--text``: (dev text, its file) of a
    checkpoint trained with ``--train-text``, or None for one trained on the text8 files.

    The dev tail comes from the encoded text in ``checkpoint_dir/text-cache`` when it matches the
    text, else from one pass over the text keeping only its last characters (never the whole
    text in memory).
    """
    if not config.train_text:
        return None
    vocab = Indexer(config.vocab)
    normalize = config.normalize
    if config.dev_text:
        return "".join(p for p, _ in checked_pieces(config.dev_text, vocab.symbols, normalize)), \
            Path(config.dev_text)
    path = Path(config.train_text)
    cached = (textcache.find(Path(checkpoint_dir) / textcache.CACHE_DIR, path, vocab.symbols, normalize)
              if checkpoint_dir is not None else None)
    if cached is not None:
        n = len(cached)
        return cached.text(n - (config.dev_tail_chars or dev_tail_chars(n)), n), path
    tail, n = "", 0
    want = config.dev_tail_chars
    for piece, _ in checked_pieces(path, vocab.symbols, normalize):
        n += len(piece)
        tail = (tail + piece)[-(want or DEV_TAIL_MAX):]
    return tail[-(want or dev_tail_chars(n)):], path
