"""Training curves (``--plot PATH`` of the trainers, and ``scripts/plot.py`` for a finished
run's ``metrics.jsonl``); needs the ``plot`` extra (matplotlib).

Framework-neutral: it draws the per-epoch records the runner keeps (the same ones
appended to ``metrics.jsonl``). The image format is the one the file's suffix names
(.png, .pdf, .svg ...; no suffix: PNG).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from mlx_rnn.core.outputs import check_plot_output, save_figure


def _pyplot(flag: str):
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

    Raises:
        ValueError: matplotlib is not installed (install the 'plot' extra), no epochs, or a
            suffix that names no image format.
    """
    plt = _pyplot("--plot")
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
        save_figure(fig, path, "training curves (mlx_rnn.tools.plot)")  # the format its suffix names
    finally:
        plt.close(fig)
    return path


# ----- scripts/plot.py: the curves of a finished run ------------------------------------------
def read_metrics(path) -> list[dict]:
    """The per-epoch records of a ``metrics.jsonl`` (``elapsed_s`` filled in from
    ``epoch_time_s`` where an older record lacks it).

    Raises:
        ValueError (one line): a missing or unreadable file, a line that is not a JSON object
            with ``epoch``, ``train_loss`` and ``val_loss``, or no records.
    """
    from mlx_rnn.core.data import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found" if not path.exists() else "not a file")
    records, elapsed = [], 0.0
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not JSON ({e.msg})", n) from None
        if not isinstance(rec, dict) or not all(k in rec for k in ("epoch", "train_loss", "val_loss")):
            raise DataError(path, "not an epoch record (needs epoch, train_loss and val_loss)", n)
        elapsed += float(rec.get("epoch_time_s") or 0.0)
        rec.setdefault("elapsed_s", elapsed)
        records.append(rec)
    if not records:
        raise DataError(path, "no epoch records (did the run finish an epoch?)")
    return records


def _runs(target: Path) -> list[tuple[str | None, Path]]:
    """(task or None, metrics.jsonl) pairs: a file, a checkpoint directory, or the root of a
    two-task run (DIR/classify, DIR/lm)."""
    from mlx_rnn.core.data import DataError

    if target.is_dir():
        if (target / "metrics.jsonl").exists():
            return [(None, target / "metrics.jsonl")]
        found = [(t, target / t / "metrics.jsonl") for t in ("classify", "lm") if (target / t / "metrics.jsonl").exists()]
        if found:
            return found
        raise DataError(target, "no metrics.jsonl here (nor in classify/ or lm/): not a trained checkpoint directory")
    return [(None, target)]


def _task_of(metrics: Path, records: list[dict]) -> str:
    config = metrics.parent / "config.json"
    if config.is_file():
        try:
            task = json.loads(config.read_text(encoding="utf-8")).get("task")
            if task in ("classify", "lm"):
                return task
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    return "classify" if "dev_accuracy" in records[0] else "lm"


def main(argv=None) -> int:
    """``scripts/plot.py``: draw a finished run's curves from its metrics.jsonl; exit 0 or 2."""
    from mlx_rnn.core.config import OneLineParser, prog_name
    from mlx_rnn.run.errors import report_exit

    p = OneLineParser(
        prog=prog_name("plot.py"),
        description="Draw the training curves of a finished run from its metrics.jsonl: train and validation "
                    "loss and the dev metric against epoch and against training seconds (the trainers' --plot).",
        epilog="With the root of a two-task run, writes OUT's name plus -classify and -lm. "
               "Exit codes: 0 ok, 2 bad input or usage.")
    p.add_argument("--metrics", required=True, metavar="PATH",
                   help="a metrics.jsonl, a checkpoint directory holding one, or a two-task --save directory")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the image to write; its suffix names the format (.png, .pdf, .svg ...)")
    p.add_argument("--title", help="figure title (default: the task and the run's directory)")
    args = p.parse_args(argv)
    try:
        out = Path(args.out)
        check_plot_output(out, "--out")  # a file, writable, a suffix naming an image format
        runs = _runs(Path(args.metrics))
        for task, metrics in runs:
            records = read_metrics(metrics)
            task = task or _task_of(metrics, records)
            dest = out.with_name(f"{out.stem}-{task}{out.suffix}") if len(runs) > 1 else out
            plot_history(records, dest, task, args.title or f"{task}: {metrics.parent}")
            n = len(records)
            print(f"wrote {dest} ({n} epoch{'' if n == 1 else 's'} of {metrics})")
    except (Exception, KeyboardInterrupt) as e:
        return report_exit(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
