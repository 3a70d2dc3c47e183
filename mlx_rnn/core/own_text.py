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
"""

from __future__ import annotations

from pathlib import Path

from .data import DataError, _read_utf8, read_text
from .vocab import Indexer

DEV_TAIL_FRACTION, DEV_TAIL_MAX = 0.10, 50_000
#: fewer characters than this cannot give a held-out tail and a training part
MIN_CHARS = 20
START = " "  # the LM's start-of-text context


def check_flags(args, tasks: list[str]) -> None:
    """ValueError (one line) for flags that cannot go with ``--train-text``/``--dev-text``."""
    if getattr(args, "dev_text", None) and not args.train_text:
        raise ValueError("--dev-text FILE goes with --train-text FILE (the text8 LM's dev text is text8-dev.txt)")
    if not args.train_text:
        return
    if tasks != ["lm"]:
        raise ValueError("--train-text trains the language model only: use --task lm (or leave --task out); "
                         "the classifier needs the text8 example files")
    if args.corpus:
        raise ValueError("--train-text and --corpus are two ways to give the LM's training text: use one")
    if args.download:
        raise ValueError("--download builds the text8 data files; --train-text FILE needs none")
    if args.normalize and args.vocab_kind != "text8":
        raise ValueError("--normalize maps the text onto a-z and space: add --vocab text8 (with --train-text the "
                         "alphabet is the text's own symbols by default)")


def configure(cfg: dict, args, resumed: bool) -> None:
    """Record the text files in the LM's config (``vocab_kind`` corpus unless ``--vocab`` says
    otherwise). On ``--resume`` the run's own files are kept; different ones are an error."""
    given = {key: str(Path(getattr(args, key)).resolve()) if getattr(args, key, None) else None
             for key in ("train_text", "dev_text")}
    if resumed:
        for key, path in given.items():
            if path is not None and path != cfg.get(key):
                had = (f"the resumed run's {cfg[key]}" if cfg.get(key) else
                       f"the resumed run, which was trained without --{key.replace('_', '-')}")
                raise ValueError(f"--{key.replace('_', '-')} {getattr(args, key)} differs from {had}; "
                                 "a resumed run keeps its texts")
        return
    if given["train_text"] is None:
        return
    cfg.update(given)
    if args.vocab_kind is None:
        cfg["vocab_kind"] = "corpus"


def text_alphabet(path) -> str:
    """The sorted symbols of a training text (read as :func:`read_text` reads it), with a
    space added when the text has none. Raises DataError for a missing, empty or non-UTF-8 file."""
    text = _read_utf8(path)
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise DataError(path, "file is empty")
    return "".join(sorted(set(text) | {START}))


def split_dev_tail(text: str) -> tuple[str, str]:
    """(training part, dev tail): the last 10 % of ``text``, at most DEV_TAIL_MAX characters."""
    n = min(DEV_TAIL_MAX, max(1, round(len(text) * DEV_TAIL_FRACTION)))
    return text[:-n], text[-n:]


def read_texts(cfg: dict, vocab: Indexer) -> tuple[str, str]:
    """(training text, dev text) of a ``--train-text`` run with alphabet ``vocab``.

    Raises:
        DataError: a bad file, a text too short to hold out a dev tail, or a dev text with a
            symbol outside the training text's alphabet (file:line:col).
    """
    train_path, dev_path = Path(cfg["train_text"]), cfg.get("dev_text")
    text = read_text(train_path, vocab, normalize=cfg.get("normalize", False))
    if dev_path is None:
        if len(text) < MIN_CHARS:
            raise DataError(train_path, f"text of {len(text)} characters is too short to train on and hold out a "
                                        f"dev tail (at least {MIN_CHARS}; or give --dev-text FILE)")
        return split_dev_tail(text)
    try:
        dev = read_text(dev_path, vocab, normalize=cfg.get("normalize", False))
    except DataError as e:
        if "not in the vocabulary" not in e.cause:
            raise
        raise DataError(e.path, e.cause.split(" (use --normalize")[0].replace(
            "is not in the vocabulary", f"is not in the alphabet of --train-text {train_path.name} "
                                        f"({len(vocab)} symbols)"), e.line, e.col) from None
    return text, dev


def lm_data(cfg: dict, resumed: bool, val_fraction: float) -> dict:
    """The LM's data for the trainer, as :func:`mlx_rnn.run.taskdata.load_task_data` returns it;
    sets ``cfg["vocab"]`` (``--vocab corpus``, a new run) and ``cfg["dev_tail_chars"]``."""
    from mlx_rnn.core.taskdata import split_validation_blocks

    if cfg.get("vocab_kind") == "corpus" and not resumed:
        cfg["vocab"] = text_alphabet(cfg["train_text"])
        cfg["vocab_size"] = len(cfg["vocab"])
    vocab = Indexer(cfg["vocab"])
    text, dev = read_texts(cfg, vocab)
    cfg["dev_tail_chars"] = None if cfg.get("dev_text") else len(dev)
    train_text, val = split_validation_blocks(text, val_fraction)
    return {"train": vocab.encode(train_text), "val": val, "dev": dev}


def default_dev_text(config: dict) -> tuple[str, Path] | None:
    """For ``scripts/evaluate.py`` without ``--text``: (dev text, its file) of a checkpoint
    trained with ``--train-text``, or None for one trained on the text8 files."""
    if not config.get("train_text"):
        return None
    vocab = Indexer(config["vocab"])
    if config.get("dev_text"):
        return read_text(config["dev_text"], vocab, normalize=config.get("normalize", False)), Path(config["dev_text"])
    text = read_text(config["train_text"], vocab, normalize=config.get("normalize", False))
    n = config.get("dev_tail_chars") or len(split_dev_tail(text)[1])
    return text[-n:], Path(config["train_text"])
