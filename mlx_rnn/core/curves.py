"""Training curves: train and validation loss and the dev metric of each epoch, drawn
against epoch and against training seconds (the trainers' ``--plot PATH``; ``scripts/plot.py``
draws a finished run's ``metrics.jsonl`` with the same function).

Framework-neutral: it draws the per-epoch records the runner keeps (the same ones appended to
``metrics.jsonl``). matplotlib (the ``plot`` extra) is imported only when a figure is drawn.
The image format is the one the file's suffix names (.png, .pdf, .svg ...; no suffix: PNG).
"""

from __future__ import annotations

import math
from pathlib import Path

from .outputs import save_figure


def pyplot(flag: str):
    """``matplotlib.pyplot`` on the Agg back end (no display needed).

    Raises:
        ValueError: matplotlib is not installed (one line naming ``flag`` and the 'plot' extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(f"{flag} needs matplotlib: pip install 'mlx-rnn[plot]'") from None
    return plt


def plot_history(history: list[dict], path, task: str, title: str = "") -> Path:
    """Draw train and validation loss and the dev metric against epoch and against seconds.

    Args:
        history: per-epoch dicts with ``epoch``, ``train_loss``, ``val_loss`` (nats),
            ``elapsed_s`` (cumulative training seconds) and ``dev_accuracy`` (percent,
            classify) or ``dev_bits_per_char`` (lm).
        path: the image to write, in the format its suffix names (no suffix: PNG; parent
            directories are created).

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: matplotlib is not installed (install the 'plot' extra), no epochs, or a
            suffix that names no image format.
    """
    plt = pyplot("--plot")
    if not history:
        raise ValueError("--plot: no finished epoch to draw")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dev_key, dev_label = (("dev_accuracy", "dev accuracy (%)") if task == "classify"
                          else ("dev_bits_per_char", "dev bits per character"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, xkey, xlabel in ((axes[0], "epoch", "epoch"), (axes[1], "elapsed_s", "training time (s)")):
        xs = [h[xkey] for h in history]
        ax.plot(xs, [h["train_loss"] for h in history], "o-", label="train loss")
        ax.plot(xs, [h["val_loss"] for h in history], "s-", label="validation loss")
        if task == "lm" and all(h.get("dev_bits_per_char") is not None for h in history):
            ax.plot(xs, [h["dev_bits_per_char"] * math.log(2.0) for h in history], "d-", label="dev loss")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss (nats)")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(xs, [h.get(dev_key) for h in history], "^--", color="tab:green", label=dev_label)
        twin.set_ylabel(dev_label)
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], loc="best", fontsize=8)
    fig.suptitle(title or f"{task}: training curves")
    fig.tight_layout()
    try:
        save_figure(fig, path, "training curves (mlx_rnn.core.curves)")  # the format its suffix names
    finally:
        plt.close(fig)
    return path
