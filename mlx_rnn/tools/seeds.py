"""Headline figures over several seeds (``scripts/seeds.py``).

Framework-neutral: runs the real trainer (``train_mlx.py`` or ``train_torch.py``) once per
seed as a separate process, with the flags given after ``--`` and ``--seed S --output-json``
added, then reports the mean and the sample standard deviation (ddof = 1) of every
measured figure: classifier dev accuracy and held-out accuracy (percent), LM dev
perplexity and bits per character, and the wall time of each run (seconds, measured here
around the trainer process: start-up, data reading, training and evaluation). Nothing is
estimated: every figure comes from a run made by this command.

Output: a table on stdout, and a JSON file (``--output-json``) with each seed's result
bundle and the summary ``{"metric": {"mean", "std", "values"}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlx_rnn.core.checkpoint import atomic_write_json
from mlx_rnn.core.outputs import check_dir_output
from mlx_rnn.run.flags import OneLineParser, prog_name
from mlx_rnn.run.errors import check_output_json

#: (task, key path in the result bundle, label, scale for printing, unit)
METRICS = (
    ("classify", ("accuracy",), "dev accuracy", 1.0, "%"),  # bundles hold accuracy in percent
    ("classify", ("heldout", "accuracy"), "held-out accuracy", 1.0, "%"),
    ("lm", ("perplexity",), "dev perplexity", 1.0, ""),
    ("lm", ("bits_per_char",), "dev bits/char", 1.0, ""),
    ("lm", ("uncalibrated_perplexity",), "dev perplexity, uncalibrated", 1.0, ""),
    ("lm", ("calibration_temperature",), "calibration temperature", 1.0, ""),
)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog_name("seeds.py"),
        description="Train with several seeds and report mean +- standard deviation of the dev figures "
                    "(the README's headline numbers). Flags after -- go to the trainer unchanged.",
        epilog="Example: python scripts/seeds.py --framework mlx --seeds 0 1 2 --output-json results/seeds-mlx.json "
               "-- --task both. Exit codes: 0 ok, 2 usage, otherwise the first failing trainer's exit code.")
    p.add_argument("--framework", choices=("mlx", "torch"), default="mlx", help="which trainer (default mlx)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default 0 1 2)")
    p.add_argument("--output-json", metavar="PATH", help="write every seed's bundle and the summary here")
    p.add_argument("--keep-logs", metavar="DIR", help="write each run's stdout/stderr to DIR/seed-S.log")
    p.add_argument("trainer_args", nargs=argparse.REMAINDER,
                   help="flags for the trainer, after -- (e.g. -- --task lm --epochs 5); {seed} in a flag's "
                        "value becomes the seed (e.g. -- --save runs/seed{seed})")
    return p


def _get(bundle: dict, path: tuple):
    for key in path:
        if not isinstance(bundle, dict) or key not in bundle:
            return None
        bundle = bundle[key]
    return bundle


def summarize(results: list[dict], wall_times_s: list[float]) -> dict:
    """Mean and sample std (ddof=1; 0.0 for one seed) of each figure present in every run.

    ``results``: one trainer result JSON per seed (``{"classify": bundle, "lm": bundle}``).
    Returns ``{name: {"mean", "std", "values"}}``; names are ``"<task> <label>"`` and ``"wall time s"``.
    """
    out = {}
    columns = [(f"{task} {label}", [_get(r.get(task, {}), path) for r in results])
               for task, path, label, _, _ in METRICS]
    columns.append(("wall time s", list(wall_times_s)))
    for name, values in columns:
        if not values or any(v is None for v in values):
            continue
        values = [float(v) for v in values]
        out[name] = {"mean": statistics.fmean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    return out


def format_table(summary: dict) -> str:
    """The summary as Markdown rows: figure | mean +- std | per-seed values."""
    scale = {f"{task} {label}": (s, unit) for task, _, label, s, unit in METRICS}
    lines = ["| figure | mean ± std | per seed |", "| --- | --- | --- |"]
    for name, st in summary.items():
        s, unit = scale.get(name, (1.0, ""))
        digits = 1 if unit == "%" or name.startswith("wall") else 3
        vals = ", ".join(f"{v * s:.{digits}f}" for v in st["values"])
        lines.append(f"| {name} | {st['mean'] * s:.{digits}f} ± {st['std'] * s:.{digits}f}{unit} | {vals} |")
    return "\n".join(lines)


def trainer_command(framework: str, seed: int, out_json: Path, trainer_args: list[str]) -> list[str]:
    """The command line of one seed's run (the installed package's trainer, this interpreter).

    ``{seed}`` in a trainer argument becomes the seed (e.g. ``--save runs/seed{seed}``).
    """
    return [sys.executable, "-m", "mlx_rnn.run.cli", framework, *(a.replace("{seed}", str(seed)) for a in trainer_args),
            "--seed", str(seed), "--output-json", str(out_json)]


def _check_args(args, trainer_args: list[str]) -> None:
    """ValueError (one line) for flags that cannot work, before any training; creates --keep-logs."""
    bad = [a for a in trainer_args if a in ("--seed", "--output-json", "--distributed")]
    if bad:
        raise ValueError(f"{bad[0]} is set by seeds.py; leave it out of the trainer flags")
    for flag in ("--save", "--resume"):  # one directory per seed
        given = [v for a, v in zip(trainer_args, trainer_args[1:] + [""]) if a == flag] + \
            [a.split("=", 1)[1] for a in trainer_args if a.startswith(flag + "=")]
        shared = [v for v in given if "{seed}" not in v]
        if len(args.seeds) > 1 and shared:
            raise ValueError(f"{flag} {shared[0]} has no {{seed}}: every seed would use the same directory "
                             f"(e.g. {flag} runs/seed{{seed}})")
    if len(set(args.seeds)) != len(args.seeds) or any(s < 0 for s in args.seeds):
        raise ValueError(f"--seeds must be distinct non-negative integers (got {args.seeds})")
    check_output_json(args.output_json)
    check_dir_output(args.keep_logs, "--keep-logs")
    if args.keep_logs:
        try:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"--keep-logs {args.keep_logs}: {e.strerror or e}") from None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    trainer_args = list(args.trainer_args)
    if trainer_args[:1] == ["--"]:
        trainer_args = trainer_args[1:]
    try:
        _check_args(args, trainer_args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log_dir = Path(args.keep_logs) if args.keep_logs else None
    results, walls = [], []
    with tempfile.TemporaryDirectory(prefix="mlx-rnn-seeds-") as tmp:
        for seed in args.seeds:
            out_json = Path(tmp) / f"seed-{seed}.json"
            cmd = trainer_command(args.framework, seed, out_json, trainer_args)
            print(f"[seeds] seed {seed}: {' '.join(cmd[1:])}", flush=True)
            t0 = time.perf_counter()
            log = open(log_dir / f"seed-{seed}.log", "w", encoding="utf-8") if log_dir else None
            try:
                proc = subprocess.run(cmd, stdout=log or None, stderr=subprocess.STDOUT if log else None,
                                      env=dict(os.environ, PYTHONUNBUFFERED="1"))
            finally:
                if log:
                    log.close()
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"error: seed {seed}: trainer exited with code {proc.returncode}"
                      + (f" (see {log_dir / f'seed-{seed}.log'})" if log_dir else ""), file=sys.stderr)
                return proc.returncode
            results.append(json.loads(out_json.read_text(encoding="utf-8")))
            walls.append(wall)
            print(f"[seeds] seed {seed}: done in {wall:.1f} s", flush=True)
    summary = summarize(results, walls)
    print(f"\n{args.framework}, seeds {' '.join(map(str, args.seeds))}; std is the sample standard deviation "
          f"(ddof=1); wall time includes start-up and evaluation\n")
    print(format_table(summary), flush=True)
    if args.output_json:
        doc = {"framework": args.framework, "seeds": args.seeds, "trainer_args": trainer_args,
               "summary": summary, "runs": [dict(seed=s, wall_time_s=w, result=r)
                                            for s, w, r in zip(args.seeds, walls, results)]}
        atomic_write_json(args.output_json, doc, follow_links=True)
        print(f"\nwrote {args.output_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
