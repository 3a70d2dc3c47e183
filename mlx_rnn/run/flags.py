"""The trainers' command line: the flags both ``train_mlx.py`` and ``train_torch.py`` take (only
``--device`` differs), and the one step from parsed flags to a typed configuration
(:func:`config_from_flags`). The argparse namespace goes no further than ``mlx_rnn/run``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from mlx_rnn.core.config import TASK_DEFAULTS, RunConfig, make_config

DEVICES = {"mlx": ("auto", "gpu", "cpu"), "torch": ("auto", "mps", "cuda", "cpu")}
#: Where a run without --save writes its checkpoints (relative to the current directory).
RUNS_DIR = "runs"
#: The default of --log-every: a progress line at most every 30 seconds (off a terminal).
LOG_EVERY_DEFAULT = ("s", 30.0)
#: Settings a resumed run may change; every other flag must match the checkpoint's config.
RESUME_OVERRIDABLE = ("epochs", "patience", "save_every", "calibrate")

def prog_name(script: str) -> str:
    """The program name for usage and error lines: the console entry point's own name when run
    as one (``mlx-rnn-train``, ``mlx-rnn-evaluate`` ...: ``sys.argv[0]`` starts with ``mlx-rnn``),
    else ``script`` (``train_mlx.py`` for ``python scripts/train_mlx.py`` and for in-process calls)."""
    base = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return base if base.startswith("mlx-rnn") else script


def log_interval(text: str) -> tuple[str, float]:
    """``--log-every``: ``"200"`` -> ``("steps", 200)``, ``"30s"`` -> ``("s", 30.0)``, ``"0"`` -> off
    (``("steps", 0)``).

    Raises:
        argparse.ArgumentTypeError: anything else (a negative, non-finite or malformed value).
    """
    t = text.strip().lower()
    try:
        if t.endswith("s"):
            val = float(t[:-1])
            if math.isfinite(val) and val >= 0:
                return ("s", val) if val > 0 else ("steps", 0)
        elif int(t) >= 0:
            return ("steps", int(t))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a number of steps (e.g. 200), seconds (e.g. 30s) or 0, got {text!r}")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (exit code 2), not usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(framework: str) -> argparse.ArgumentParser:
    """The trainer's argument parser; flags left unset are None so per-task defaults apply."""
    name = "train_mlx.py" if framework == "mlx" else "train_torch.py"
    p = OneLineParser(
        prog=prog_name(name),
        description=("Train the text8 character models with "
                     + ("MLX" if framework == "mlx" else "PyTorch")
                     + ": the vowel classifier (task classify) and/or the character LM (task lm), or the LM on "
                     "your own text (--train-text FILE). "
                     "Prints one line per epoch, then the result JSON keyed by task."),
        epilog=("Per-task defaults (a flag given on the command line applies to every task run): "
                + "; ".join(f"{t}: " + ", ".join(f"{k}={v}" for k, v in d.items())
                            for t, d in TASK_DEFAULTS.items())
                + f". Checkpoints go to --save DIR, else to a new {RUNS_DIR}/NAME-DATE-TIME directory (--no-save: "
                "none); the run's last lines name it and the commands to use it. "
                "Exit codes: 0 ok, 2 bad input or usage, 3 training diverged, 130 interrupted by Ctrl-C (SIGINT) "
                "or SIGTERM (resumable state saved; --resume DIR continues)."),
    )
    _add_data_flags(p)
    _add_model_flags(p)
    _add_optimizer_flags(p)
    _add_run_flags(p, framework)
    _add_text_flags(p)
    _add_distributed_flags(p, framework)
    return p


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    """Which task, and where its data come from."""
    p.add_argument("--task", choices=("classify", "lm", "both"),
                   help="which model to train (default: both; with --train-text: lm; with --resume, what the "
                        "checkpoint holds)")
    p.add_argument("--data-dir", help="directory with the text8 files (default: $MLX_RNN_DATA, else ./data)")
    p.add_argument("--download", action="store_true",
                   help="when the data files are missing, build them first (downloads text8.zip; "
                        "same as scripts/prepare_data.py --out DATA_DIR)")
    p.add_argument("--normalize", action="store_true",
                   help="map the LM text files onto a-z and space first (newlines, capitals, digits, "
                        "punctuation); without it any other character is an error")


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """Sizes, epochs, the cell and its regularisation (dropout, DropConnect)."""
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--batch-size", type=int, help="sequences per batch")
    p.add_argument("--embed-dim", type=int, help="embedding size E")
    p.add_argument("--hidden-size", type=int, help="LSTM hidden size H")
    p.add_argument("--num-layers", type=int, help="stacked LSTM layers")
    p.add_argument("--vocab", dest="vocab_kind", choices=("text8", "corpus"),
                   help="alphabet: text8 (a-z and space, default) or corpus (every symbol of the LM training text, "
                        "capitals, punctuation and newlines included; stored in config.json)")
    p.add_argument("--cell", choices=("lstm", "gru"),
                   help="recurrent cell (default lstm); parameters keep PyTorch's names (lstm.* or gru.*)")
    p.add_argument("--dropout", type=float, help="dropout between LSTM layers and on the LSTM output, and on the "
                                                "embeddings unless --input-dropout is given")
    p.add_argument("--input-dropout", type=float, metavar="P",
                   help="dropout on the embedding output (the LSTM's input); default: the same as --dropout")
    p.add_argument("--weight-drop", type=float, metavar="P",
                   help="DropConnect on the recurrent weights (weight_hh) in training, one mask per step "
                        "(Merity et al. 2018, weight-dropped LSTM); 0 = off")


def _add_optimizer_flags(p: argparse.ArgumentParser) -> None:
    """The optimizer and its schedule, and the per-task training options."""
    p.add_argument("--lr", type=float, help="peak learning rate of Adam/AdamW")
    p.add_argument("--weight-decay", type=float, help="decoupled weight decay (AdamW); 0 = plain Adam")
    p.add_argument("--clip-norm", type=float, help="clip the global gradient norm to this (0 = off)")
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up steps")
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), help="learning-rate schedule after warm-up")
    p.add_argument("--seq-len", type=int, help="LM: truncated-BPTT chunk length in characters")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=None,
                   help="LM: after training, fit one temperature that divides the logits, minimising the loss "
                        "on the validation slice (never the dev text; temperature scaling, Guo et al. 2017), "
                        "and store it in the checkpoint (default on; the JSON also reports the uncalibrated "
                        "figures)")
    p.add_argument("--prefix-weight", type=float, metavar="W",
                   help="classify: weight of the prefix loss, which also trains on the vowel/consonant label "
                        "of every character inside each training window (prefix t predicts character t+1; "
                        "spaces skipped; only the train examples are used); 0 = the final label only")


def _add_run_flags(p: argparse.ArgumentParser, framework: str) -> None:
    """Seed, model selection, device, checkpoints and the run's outputs."""
    p.add_argument("--seed", type=int, help="random seed for initialisation, dropout and data order (default 0)")
    p.add_argument("--val-fraction", type=float,
                   help="share of the training data held out for model selection (default 0.05; LM: ten "
                        "evenly spaced blocks of the text, classify: a random share of the examples; "
                        "the dev files are never used for selection)")
    p.add_argument("--patience", type=int,
                   help="stop after this many epochs without a better validation loss (0 = never; default 0). "
                        "The best epoch's weights are kept either way")
    p.add_argument("--device", choices=DEVICES[framework], default="auto",
                   help="compute device (default auto: " + ("GPU if MLX has one, else CPU)" if framework == "mlx"
                                                            else "MPS, then CUDA, then CPU)"))
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 (10-bit mantissa) in float32 matrix products on a GPU, in MLX and PyTorch alike: "
                        "faster on CUDA GPUs and M5-class Apple GPUs, less exact. Default: full float32 on every "
                        "device (a MLX_ENABLE_TF32 you set yourself wins for MLX); the run header and the result "
                        "JSON's config.precision say which ran")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--save", metavar="DIR",
                       help="write the checkpoint here (both tasks: DIR/classify and DIR/lm); default: a new "
                            f"directory {RUNS_DIR}/NAME-YYYYmmdd-HHMMSS under the current directory (NAME: the task, "
                            "'both', or the stem of --train-text); a resumed run writes into the directory it resumes")
    where.add_argument("--no-save", action="store_true",
                       help="write no checkpoint (Ctrl-C or SIGTERM still saves resumable state, under "
                            "checkpoints/interrupted-DATE)")
    p.add_argument("--save-every", type=int, help="write resumable state every N epochs (default 1)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue an interrupted run from its checkpoint directory (weights, optimizer, RNG, "
                        "data order); only --epochs, --patience, --save-every and --calibrate may change")
    p.add_argument("--plot", metavar="PATH",
                   help="draw train/validation loss and the dev metric against epoch and seconds in this image "
                        "(format from the suffix: .png, .pdf, .svg ...; both tasks: PATH-classify.png and PATH-lm.png); "
                        "needs the 'plot' extra; scripts/plot.py draws a finished run later")
    p.add_argument("--init-from-lm", metavar="CKPT",
                   help="classify: start the embedding and LSTM from this LM checkpoint (sizes taken from it)")
    p.add_argument("--zero-shot-lm", metavar="CKPT",
                   help="classify: train nothing; predict a vowel when this LM gives a, e, i, o, u total "
                        "probability >= 0.5")
    p.add_argument("--output-json", metavar="PATH", help="also write the result JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    p.add_argument("--log-every", type=log_interval, metavar="N|Ts", default=None,
                   help="when stderr is not a terminal (a log file, a pipe): a progress line (steps, running mean "
                        "train loss, characters per second, the epoch's ETA) every N steps (e.g. 200) or every T "
                        "seconds (e.g. 30s; default 30s); 0 = none. On a terminal a progress bar shows instead")


def _add_text_flags(p: argparse.ArgumentParser) -> None:
    """The LM on other text: your own file or a whole corpus."""
    p.add_argument("--train-text", metavar="FILE",
                   help="LM: train on this UTF-8 text (any symbols: capitals, punctuation, newlines) with an "
                        "alphabet of its own (--vocab corpus by default then; stored in config.json); no data "
                        "directory needed. Implies --task lm. Any size: read in pieces (a progress line every 5 s) "
                        "and encoded once (one byte a symbol; two above 256 symbols, four above 65,536) into SAVE_DIR/text-cache/ (reused by --resume), "
                        "from which batches are read; devices and FIFOs are refused")
    p.add_argument("--dev-text", metavar="FILE",
                   help="with --train-text: the dev text to report (its symbols must be in the training text); "
                        "default: a held-out tail of the training text (the last 10 %%, at most 50,000 characters, "
                        "never trained on)")
    p.add_argument("--corpus", nargs=2, metavar=("NAME", "PATH"),
                   help="LM: train on a whole corpus file instead of text8-100k.txt; NAME text8 (the 10^8-char "
                        "text8 file: first 90M chars train, next 5M validation, last 5M test; other lengths split "
                        "by the same fractions), streamed from disk; adds valid/test bits per char to the result")


def _add_distributed_flags(p: argparse.ArgumentParser, framework: str) -> None:
    """Data-parallel training over several processes."""
    launcher = ("mlx.launch -n N --backend ring -- python scripts/train_mlx.py" if framework == "mlx"
                else "torchrun --nproc-per-node N scripts/train_torch.py")
    p.add_argument("--distributed", action="store_true",
                   help=f"data-parallel training; start with {launcher} --distributed ... Each rank trains on its "
                        "share of every global batch of batch-size x ranks; only rank 0 prints and writes")
    p.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                   help="with --distributed: end a rank that waits this long for its peers in a step "
                        "(a hung or vanished peer; default 300, 0 = never)")

def config_from_flags(args: argparse.Namespace, task: str) -> RunConfig:
    """The task's configuration: its defaults with the flags given on top (a flag left unset is None
    and keeps the default; the classifier's windows are always 20 characters).

    Raises:
        ValueError: a setting that cannot work, naming the flag (:func:`mlx_rnn.core.config.validate_config`).
    """
    given = {key: getattr(args, key) for key in RunConfig.flag_settings(task) if getattr(args, key, None) is not None}
    if task == "classify":
        given.pop("seq_len", None)
    return make_config(task, **given)
