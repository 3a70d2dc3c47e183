"""``scripts/sample.py``: generate text from a trained LM checkpoint in MLX or PyTorch."""

from __future__ import annotations

import argparse
import sys

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.run.flags import prog_name
from mlx_rnn.run.errors import EXIT_BAD_INPUT, EXIT_OK, report_exit
from mlx_rnn.run.stop import sigterm_interrupts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog_name("sample.py"),
        description="Generate text from a trained character LM checkpoint, one symbol at a time with carried state.",
        epilog="Exit codes: 0 ok, 2 bad input or usage.")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="LM checkpoint directory")
    p.add_argument("--prime", default=" ", help="text to start from (default ' '); must use the model's vocabulary")
    p.add_argument("--length", type=int, default=300, help="symbols to generate (default 300)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature; 0 = greedy (default 0.8). It divides the log probabilities of "
                        "the model as stored, i.e. after the checkpoint's calibration temperature, if any")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely symbols only (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed + weights = same text)")
    p.add_argument("--framework", choices=("mlx", "torch"), default="mlx", help="framework to run in (default mlx)")
    p.add_argument("--device", default="cpu", help="mlx: cpu/gpu/auto; torch: cpu/mps/cuda/auto (default cpu)")
    p.add_argument("--no-prime", action="store_true", help="print only the generated text, not the prime")
    return p

#: symbols one call may sample (one forward step each)
MAX_LENGTH = 10_000_000


def main(argv=None) -> int:
    with sigterm_interrupts():  # SIGTERM: "interrupted by SIGTERM", exit 130, as Ctrl-C
        return _main(argv)


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    for flag, value in (("--length", args.length), ("--seed", args.seed), ("--top-k", args.top_k)):
        if value < 0:
            print(f"error: {flag} must be >= 0 (got {value})", file=sys.stderr)
            return EXIT_BAD_INPUT
    if args.length > MAX_LENGTH:  # about 40 minutes of sampling on a CPU: a typo, not a wish
        print(f"error: --length must be at most {MAX_LENGTH:,} (got {args.length})", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        config = ckpt.read_config(args.checkpoint)
        if config.task != "lm":
            raise ValueError(f"{args.checkpoint}: is a {config.task!r} checkpoint; sampling needs an LM")
        from .evaluate import load_wrapper

        lm, _ = load_wrapper(args.framework, args.checkpoint, args.device)
        symbols = lm.sample_stream(args.prime, args.length, args.temperature, args.top_k or None, args.seed)
        first = next(symbols, "")  # (checks the prime before anything is printed)
        print(first if args.no_prime else args.prime + first, end="")
        for i, symbol in enumerate(symbols):  # printed as drawn: an interrupted run keeps its text
            print(symbol, end="", flush=i % 64 == 63)
        print(flush=True)
    except (Exception, KeyboardInterrupt) as e:
        try:  # what was drawn reaches the reader before the error line
            print(end="", flush=True)
        except (OSError, ValueError):
            pass
        return report_exit(e)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
