"""``scripts/plot.py``: the training curves of a finished run, from its ``metrics.jsonl``;
needs the ``plot`` extra (matplotlib).

The drawing itself is :func:`mlx_rnn.core.curves.plot_history`, which the trainers' ``--plot``
uses as well. The image format is the one the file's suffix names (.png, .pdf, .svg ...; no
suffix: PNG).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mlx_rnn.core.curves import plot_history
from mlx_rnn.core.outputs import check_plot_output


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
        bad = [k for k in ("epoch", "train_loss", "val_loss", "epoch_time_s", "elapsed_s")
               if k in rec and (isinstance(rec[k], bool) or not isinstance(rec[k], (int, float)))]
        if bad:
            raise DataError(path, f"{bad[0]} is {rec[bad[0]]!r}, not a number", n)
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
    from mlx_rnn.run.flags import OneLineParser, prog_name
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
