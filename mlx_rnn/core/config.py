"""Run configuration: per-task defaults and the shared command-line flags.

Framework-neutral. ``train_mlx.py`` and ``train_torch.py`` build the same parser
here; only ``--device`` differs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from .vocab import TEXT8_SYMBOLS

TASK_DEFAULTS = {
    "classify": dict(embed_dim=32, hidden_size=128, num_layers=1, dropout=0.2, lr=3e-3,
                     weight_decay=0.1, clip_norm=1.0, batch_size=64, seq_len=20, epochs=20,
                     warmup_steps=0, lr_schedule="cosine", prefix_weight=1.0, weight_drop=0.0,
                     input_dropout=None),
    "lm": dict(embed_dim=512, hidden_size=512, num_layers=2, dropout=0.5, lr=4.5e-3,
               weight_decay=0.1, clip_norm=1.0, batch_size=32, seq_len=25, epochs=20,
               warmup_steps=50, lr_schedule="cosine", weight_drop=0.0, input_dropout=None, calibrate=True),
}
COMMON_DEFAULTS = dict(seed=0, val_fraction=0.05, patience=0, save_every=1, cell="lstm", vocab_kind="text8")
DEVICES = {"mlx": ("auto", "gpu", "cpu"), "torch": ("auto", "mps", "cuda", "cpu")}
#: Where a run without --save writes its checkpoints (relative to the current directory).
RUNS_DIR = "runs"
#: The default of --log-every: a progress line at most every 30 seconds (off a terminal).
LOG_EVERY_DEFAULT = ("s", 30.0)
#: Settings a resumed run may change; every other flag must match the checkpoint's config.
RESUME_OVERRIDABLE = ("epochs", "patience", "save_every", "calibrate")


def cell_of(cfg: dict) -> str:
    """The recurrent cell of a configuration: "lstm" (also for configurations older than the GRU) or "gru"."""
    return cfg.get("cell", "lstm")


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
                        "and encoded once, one byte a symbol, into SAVE_DIR/text-cache/ (reused by --resume), "
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

def resolve_config(args: argparse.Namespace, task: str) -> dict:
    """Merge per-task defaults with the flags given; returns the run's config dict."""
    cfg = dict(TASK_DEFAULTS[task])
    cfg.update(COMMON_DEFAULTS)
    for key in list(cfg):
        val = getattr(args, key, None)
        if val is not None:
            cfg[key] = val
    if task == "classify":
        cfg["seq_len"] = 20
    cfg.update(task=task, vocab=TEXT8_SYMBOLS, vocab_size=len(TEXT8_SYMBOLS))
    validate_config(cfg)
    return cfg


#: The calibration temperatures a checkpoint may hold (the fit itself stays in [0.25, 4]).
CALIBRATION_TEMPERATURE_BOUNDS = (0.01, 100.0)
_T_LO, _T_HI = CALIBRATION_TEMPERATURE_BOUNDS

#: More epochs than anyone trains for (a typo such as 2000000000 is refused, not run for years).
MAX_EPOCHS = 100_000

#: What each numeric setting must be: key -> (integer?, test, the rule in a flag's words, the rule in
#: config.json's words). A flag's type is already checked by argparse, so its words give the range;
#: a config.json value may be any JSON value, so those words give the type as well.
SETTING_RULES = {
    **{key: (True, lambda v: v >= 1, "must be at least 1", "must be a positive integer")
       for key in ("vocab_size", "embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len", "save_every")},
    "epochs": (True, lambda v: 1 <= v <= MAX_EPOCHS, f"must be between 1 and {MAX_EPOCHS:,}",
               f"must be an integer between 1 and {MAX_EPOCHS:,}"),
    "dropout": (False, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", "must be a number in [0, 1)"),
    "input_dropout": (False, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", "must be a number in [0, 1)"),
    "weight_drop": (False, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", "must be a number in [0, 1)"),
    "prefix_weight": (False, lambda v: v >= 0, "must not be negative", "must be a non-negative number"),
    "lr": (False, lambda v: v > 0, "must be positive", "must be a positive number"),
    "val_fraction": (False, lambda v: 0.0 < v < 0.5, "must be in (0, 0.5)", "must be a number in (0, 0.5)"),
    "weight_decay": (False, lambda v: v >= 0, "must not be negative", "must be a non-negative number"),
    "clip_norm": (False, lambda v: v >= 0, "must not be negative", "must be a non-negative number"),
    **{key: (True, lambda v: v >= 0, "must not be negative", "must be a non-negative integer")
       for key in ("warmup_steps", "patience", "seed")},
    "calibration_temperature": (False, lambda v: _T_LO <= v <= _T_HI, f"must be in [{_T_LO:g}, {_T_HI:g}]",
                                f"must be a number in [{_T_LO:g}, {_T_HI:g}]"),
}
#: Settings that take one of a few values.
SETTING_CHOICES = {"cell": ("lstm", "gru"), "lr_schedule": ("constant", "cosine"), "vocab_kind": ("text8", "corpus")}


def is_integer(x) -> bool:
    """An int that is not a bool (JSON true/false are bools)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_finite_number(x) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_config(cfg: dict, where=None) -> None:
    """Raise ValueError (one line) for a setting of ``cfg`` that cannot work.

    The one check of every setting, for a run's flags and for a checkpoint's ``config.json``
    alike. Only the settings present are checked (a run's configuration has all of them; a
    checkpoint's model keys are required by ``checkpoint.read_config``); ``input_dropout`` may
    be None (it follows ``dropout``).

    Args:
        where: None for a run's configuration: the message names the flag (``--dropout must be
            in [0, 1) (got 1.5)``); else the file the settings were read from: the message names
            the file and the key (``PATH: 'dropout' must be a number in [0, 1) (got 1.5)``).
    """
    def name(key):
        return "--" + key.replace("_", "-") if where is None else f"{where}: {key!r}"

    for key, (integer, ok, flag_rule, file_rule) in SETTING_RULES.items():
        val = cfg.get(key)
        if key not in cfg or (key == "input_dropout" and val is None):
            continue
        typed = is_integer(val) if integer else is_finite_number(val)
        if where is None and not typed:
            raise ValueError(f"{name(key)} must be {'an integer' if integer else 'a finite number'} (got {val!r:.60})")
        if not typed or not ok(val):
            raise ValueError(f"{name(key)} {flag_rule if where is None else file_rule} (got {val!r:.60})")
    for key, choices in SETTING_CHOICES.items():
        if key in cfg and cfg[key] not in choices:
            raise ValueError(f"{name(key)} must be {' or '.join(choices)} (got {cfg[key]!r:.60})")
    if "calibrate" in cfg and not isinstance(cfg["calibrate"], bool):
        raise ValueError(f"{name('calibrate')} must be true or false (got {cfg['calibrate']!r:.60})")
    prefix = "" if where is None else f"{where}: "
    if "vocab" in cfg:
        vocab = cfg["vocab"]
        if not isinstance(vocab, str) or not vocab or len(set(vocab)) != len(vocab):
            raise ValueError(f"{name('vocab')} must be a non-empty string of distinct symbols (got {vocab!r:.60})")
        if "vocab_size" in cfg and len(vocab) != cfg["vocab_size"]:
            raise ValueError(f"{prefix}vocab has {len(vocab)} symbols but vocab_size is {cfg['vocab_size']}")
