"""A task's data for the trainer: which files, reading and encoding them, the validation slice
carved from the training data, and the fingerprints and overlap counts reported with it.

Numpy only (``torch_ref``, the tools and the trainer all read data through it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from . import distributed
from .batching import steps_per_epoch
from .config import RunConfig
from .data import CLASSIFY_FILES, LM_FILES, DataError, check_data_dir, load_examples, read_text
from .transfer import heldout_windows
from .vocab import Indexer


def task_files(task: str) -> list[str]:
    """The data files a task needs (the classifier also reads text8-100k.txt when present)."""
    return list(CLASSIFY_FILES.values()) if task == "classify" else list(LM_FILES.values())


def load_task_data(task: str, data_dir: Path, vocab: Indexer, val_fraction: float, seed: int,
                   normalize: bool = False) -> dict:
    """Read and encode one task's files; carve the validation slice from the training data.

    ``normalize`` maps the LM text files onto the vocabulary first (``--normalize``).
    Returns a dict with "train" (as the Trainer expects), "val", "dev", raw texts and "notes"
    (one line for each optional file that could not be used: the classifier's held-out windows
    and contamination counts come from the LM files). Raises DataError for missing or bad files.
    """
    data_dir = Path(data_dir)
    check_data_dir(data_dir, task_files(task))
    if task == "classify":
        train = load_examples(data_dir / CLASSIFY_FILES["train_consonant"],
                              data_dir / CLASSIFY_FILES["train_vowel"], vocab)
        dev = load_examples(data_dir / CLASSIFY_FILES["dev_consonant"],
                            data_dir / CLASSIFY_FILES["dev_vowel"], vocab)
        order = np.random.default_rng([seed, 0xDA7A]).permutation(len(train.y))
        n_val = max(1, int(round(len(order) * val_fraction)))
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        out = {"train": (train.x[train_idx], train.y[train_idx]),
               "val": ([train.texts[i] for i in val_idx], train.y[val_idx]),
               "dev": (dev.texts, dev.y),
               "train_texts": [train.texts[i] for i in train_idx], "notes": []}
        # Only for the contamination figures: a missing or unreadable LM file drops them, with a note.
        try:
            out["lm_text"] = read_text(data_dir / LM_FILES["train"], vocab, normalize=normalize)
        except DataError as e:
            out["lm_text"] = None
            out["notes"].append(f"no contamination counts: {e}")
        # Honest held-out windows: text8-dev.txt is not inside text8-100k.txt (mlx_rnn/core/transfer.py).
        try:
            out["heldout"] = heldout_windows(read_text(data_dir / LM_FILES["dev"], vocab, normalize=normalize))
        except DataError as e:
            out["heldout"] = None
            out["notes"].append(f"no held-out accuracy: {e}")
        return out
    text = read_text(data_dir / LM_FILES["train"], vocab, normalize=normalize)
    dev = read_text(data_dir / LM_FILES["dev"], vocab, normalize=normalize)
    if len(text) < 4:
        raise DataError(data_dir / LM_FILES["train"], f"text of {len(text)} characters is too short to train on")
    if len(dev) < 1:
        raise DataError(data_dir / LM_FILES["dev"], "no text to evaluate")
    train_text, val = split_validation_blocks(text, val_fraction)
    return {"train": vocab.encode(train_text), "val": val, "dev": dev}


#: LM validation: at most this many blocks, each at least VAL_BLOCK_MIN characters.
VAL_BLOCKS, VAL_BLOCK_MIN = 10, 100


def validation_ranges(n: int, val_fraction: float) -> list[tuple[int, int]]:
    """The LM validation blocks of a text of ``n`` characters, as ``[(start, stop), ...]``.

    The text is cut into k equal segments (k = VAL_BLOCKS, fewer for a short text so that a
    block has at least VAL_BLOCK_MIN characters) and the last ``n * val_fraction / k``
    characters of each segment are held out. Spread over the whole text, the blocks estimate
    the loss on typical text; one contiguous tail would be a single article (the last 5 % of
    text8-100k is one about Abu Dhabi's postal history, mostly spelled-out numbers). For a text
    too short for blocks of VAL_BLOCK_MIN characters, one block: the last share of the text.
    """
    n_val = max(2, int(round(n * val_fraction)))
    k = max(1, min(VAL_BLOCKS, n_val // VAL_BLOCK_MIN))
    block, seg = n_val // k, n // k
    return [((i + 1) * seg - block if i < k - 1 else n - block, (i + 1) * seg if i < k - 1 else n) for i in range(k)]


def split_validation_blocks(text: str, val_fraction: float) -> tuple[str, list[str]]:
    """Carve the LM validation text out of the training text (:func:`validation_ranges`).

    Returns:
        (training text with the blocks removed, list of k validation blocks).
    """
    ranges = validation_ranges(len(text), val_fraction)
    train, val, start = [], [], 0
    for a, b in ranges:
        train.append(text[start:a])
        val.append(text[a:b])
        start = b
    return "".join(train), val


def check_trainable(cfg: RunConfig, train, where) -> int:
    """The training steps of one epoch over this run's ranks (:func:`mlx_rnn.core.batching.steps_per_epoch`),
    or ValueError (one line) when the data gives no full step."""
    size = len(train[1]) if cfg.task == "classify" else len(train)
    what = "training examples" if cfg.task == "classify" else "training characters"
    world = distributed.current().world_size
    try:
        steps = steps_per_epoch(cfg, train, world)
    except ValueError:
        steps = 0
    if cfg.task == "classify" and cfg.batch_size * world > size:
        raise ValueError(f"{where}: --batch-size {cfg.batch_size}" + (f" x {world} ranks" if world > 1 else "")
                         + f" is larger than the {size} {what} (after the validation slice); "
                         f"use a batch size of at most {size // world}")
    if steps < 1:
        hint = "--batch-size" if cfg.task == "classify" else "--batch-size or --seq-len"
        raise ValueError(f"{where}: {size} {what} (after the validation slice) give no full training step "
                         f"with batch size {cfg.batch_size}" + (f" and sequence length {cfg.seq_len}"
                                                                   if cfg.task == "lm" else "")
                         + f"; use more data or a smaller {hint}")
    return steps


def data_fingerprint(train) -> str:
    """sha256 of the encoded training data (recorded with resumable state)."""
    if hasattr(train, "fingerprint"):  # a corpus split read from disk (--corpus)
        return train.fingerprint()
    h = hashlib.sha256()
    for arr in (train if isinstance(train, tuple) else (train,)):
        h.update(np.ascontiguousarray(arr, dtype=np.int32).tobytes())
    return h.hexdigest()


def contamination(dev_texts: list[str], train_texts: list[str], lm_text: str | None) -> dict:
    """How many dev windows occur verbatim in the classifier's and the LM's training data."""
    train_set = set(train_texts)
    out = {"dev_windows_in_classifier_train": sum(t in train_set for t in dev_texts)}
    if lm_text is not None:
        out["dev_windows_in_lm_train"] = sum(t in lm_text for t in dev_texts)
    return out
