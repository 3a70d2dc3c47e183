"""The ``scripts/prepare_data.py`` / ``mlx-rnn-prepare-data`` command line: :func:`main`.

Exit codes: 0 success; 1 a checksum failed; 2 bad input or usage, or a download that
failed (unreachable host, HTTP error, full disk: one ``error:`` line naming the URL or
file); 130 interrupted. Framework-neutral.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mlx_rnn.run.flags import prog_name
from mlx_rnn.core.corpus import SPLIT_FRACTIONS, TEXT8_CHARS, split_bounds
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, DataError, resolve_data_dir
from mlx_rnn.core.prepare.build import Report, prepare
from mlx_rnn.core.prepare.dataset import TEST_TEXT_FILE
from mlx_rnn.core.prepare.download import DEFAULT_RETRIES
from mlx_rnn.core.prepare.text8 import TEXT8_SHA1, TEXT8_URL, TEXT8_ZIP_SHA1, ChecksumError

DESCRIPTION = (
    "Build the exercise's data files from text8 (downloaded, or a local copy) or from "
    "any text: text8-100k.txt (the first 100,000 characters; from text8 byte for byte "
    "the standard file), 5,000+5,000 train and 500+500 dev classification windows "
    "(20 characters, the next one a consonant / a vowel), 500-character text8-dev.txt "
    "and text8-test.txt, and SHA256SUMS. The text is split 90/5/5 % into train, "
    "validation and test parts (text8's standard 90M/5M/5M): train windows come from "
    "the train part, dev windows and the dev text from the validation part, the test "
    "text from the test part. Exit codes: 0 ok, 1 checksum failed, 2 bad input or "
    "usage or a failed download, 130 interrupted.")


def _fractions(s: str):
    try:
        fr = tuple(float(x) for x in s.split(","))
        split_bounds(TEXT8_CHARS, fr)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected three positive fractions summing to at most 1, like 0.9,0.05,0.05; "
            f"got {s!r}") from None
    return fr


def _hex64(s: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{64}", s):
        raise argparse.ArgumentTypeError(f"expected 64 hex digits, got {s!r}")
    return s.lower()


def _nonneg(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The ``prepare_data.py`` argument parser."""
    p = argparse.ArgumentParser(prog=prog_name("prepare_data.py"), description=DESCRIPTION)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text8", metavar="PATH",
                     help="use this local text8.zip (its one member 'text8' is streamed, not "
                          "extracted) or raw text8 file instead of downloading. A shorter "
                          "text8-shaped file (a-z and single spaces, starting with text8's first "
                          "100,000 characters) is accepted with a warning")
    src.add_argument("--text", metavar="FILE",
                     help="use any UTF-8 text file instead of text8: lowercased, digits spelled "
                          "out, every other character a space (text8's own cleaning); short "
                          "texts get proportionally fewer examples")
    p.add_argument("--out", metavar="DIR",
                   help="directory to write the files into, created if missing (default: the "
                        "data directory: --data-dir, else $MLX_RNN_DATA, else ./data)")
    p.add_argument("--data-dir", metavar="DIR",
                   help="the data directory, used as the default --out (default: $MLX_RNN_DATA, "
                        "else ./data)")
    _add_download_args(p)
    p.add_argument("--seed", type=_nonneg, default=0,
                   help="random seed for choosing windows and texts; the same input and seed give "
                        "the same files (default: %(default)s)")
    p.add_argument("--split", type=_fractions, default=SPLIT_FRACTIONS, metavar="TRAIN,VALID,TEST",
                   help="fractions of the text for the train, validation and test parts, in "
                        "that order (default: 0.9,0.05,0.05, text8's standard split)")
    p.add_argument("--fold-accents", action="store_true",
                   help="with --text: spell accented letters without accents (é -> e, ß -> "
                        "ss) instead of turning them into spaces as text8 does")
    p.add_argument("--force", action="store_true",
                   help="overwrite output files that exist with different content (identical "
                        "files are always left as they are)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no summary of the files written (notes, warnings "
                        "and errors still print)")
    return p


def _add_download_args(p: argparse.ArgumentParser) -> None:
    """--url, --sha256 and --retries."""
    p.add_argument("--url", default=None,
                   help=f"address to download text8.zip from when neither --text8 nor --text is "
                        f"given (default: {TEXT8_URL}). The archive is checked, saved in the "
                        "output directory and reused by later runs; an unfinished download "
                        "leaves no file and is started again by the next run")
    p.add_argument("--sha256", type=_hex64, metavar="HEX",
                   help="expected SHA-256 of the archive (the download or the --text8 file); "
                        f"replaces the built-in checks of text8.zip (SHA-1 {TEXT8_ZIP_SHA1}) and "
                        f"of its full text (SHA-1 {TEXT8_SHA1}). The text8-100k.txt checksum is "
                        "always checked")
    p.add_argument("--retries", type=_nonneg, default=DEFAULT_RETRIES,
                   help="how many times to retry a download that fails (connection, HTTP error "
                        "or checksum), each from the start, waiting 1, 2, 3, ... s in between "
                        "(default: %(default)s)")


def main(argv=None) -> int:
    """Command-line entry point; returns the exit code (0, 1, 2 or 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url is not None and (args.text8 or args.text):
        parser.error("--url only applies when downloading (without --text8 or --text)")
    if args.sha256 and args.text:
        parser.error("--sha256 checks text8 archives; it does not apply to --text")
    if args.fold_accents and not args.text:
        parser.error("--fold-accents only applies to --text")
    out = Path(args.out) if args.out else resolve_data_dir(args.data_dir)
    try:
        report = prepare(out, text8=args.text8, text=args.text, url=args.url or TEXT8_URL,
                         sha256=args.sha256, seed=args.seed, fractions=args.split,
                         force=args.force, fold_accents=args.fold_accents,
                         retries=args.retries, progress=not args.quiet)
    except ChecksumError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (no partial file kept; rerun to start again)", file=sys.stderr)
        return 130
    if not args.quiet:
        _print_summary(report, args.seed)
    return 0


def _print_summary(report: Report, seed: int) -> None:
    """The source, the split and each file written, on stdout."""
    ds = report.dataset
    (a, b), (c, d), (e, f) = ds.splits["train"], ds.splits["valid"], ds.splits["test"]
    print(f"source: {report.source}; seed {seed}; train [{a:,}, {b:,}), "
          f"validation [{c:,}, {d:,}), test [{e:,}, {f:,})")
    counts = {LM_FILES["train"]: f"{len(ds.lm_train):,} chars",
              LM_FILES["dev"]: f"{len(ds.dev_text):,} chars from {ds.dev_text_pos:,}",
              TEST_TEXT_FILE: f"{len(ds.test_text):,} chars from {ds.test_text_pos:,}",
              CLASSIFY_FILES["train_consonant"]: f"{len(ds.train_consonant):,} lines",
              CLASSIFY_FILES["train_vowel"]: f"{len(ds.train_vowel):,} lines",
              CLASSIFY_FILES["dev_consonant"]: f"{len(ds.dev_consonant):,} lines",
              CLASSIFY_FILES["dev_vowel"]: f"{len(ds.dev_vowel):,} lines"}
    for path in report.paths:
        print(f"wrote {path}" + (f" ({counts[path.name]})" if path.name in counts else ""))
    if report.archive is not None:
        print(f"kept {report.archive} (delete it to save space; reruns reuse it)")
