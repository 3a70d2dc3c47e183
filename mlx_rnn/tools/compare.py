"""Cross-framework comparison of one checkpoint (``scripts/compare.py``).

Loads the same weights with :func:`mlx_rnn.load` and :func:`torch_ref.load`, runs
both over the dev data and reports, per task:

- classify: max |logit difference| over the dev examples, both accuracies, how many
  predictions agree, and how many disagreements have |logit| < 1e-5 in both frameworks
  (a sign flip of a logit that is numerically zero is not a parity failure);
- lm: max |logit difference| over the dev text (every scored position), both log
  probabilities of the dev text after the context " ", both perplexities, and the
  exercise's sanity checks in each framework.

Logits agree when ``|mlx - torch| <= logits_abs + logits_rel * |torch|`` at every
position: the float32 defaults of ``torch.testing.assert_close`` (atol 1e-5, rtol
1.3e-6). The relative term is there because float32 rounding grows with the logit's
size: on the default LM (logits up to about 12) MLX alone moved its logits by 1.1e-5
when the process first called ``mx.set_default_device(mx.cpu)`` (the device it already
used), and the largest MLX-PyTorch difference (1.24e-5) sat at a logit of 12.3.
``"max_logit_diff_ratio"`` reports the worst position's |difference| / (atol + rtol
|torch|); <= 1 passes.

The result JSON is keyed by task (docs/design.md) and every task carries ``"tolerances"``,
``"checks"`` (one boolean per tolerance) and ``"passed"``. Exit codes: 0 all within
tolerance, 1 a tolerance broken, 2 bad input or usage, 3 training diverged (``--train``),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import own_text
from mlx_rnn.run.flags import OneLineParser, prog_name
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES, load_examples, read_text, resolve_data_dir
from mlx_rnn.core.metrics import classification_bundle, lm_bundle
from mlx_rnn.run.errors import EXIT_CHECK_FAILED, EXIT_OK, check_output_json, print_result, report_exit
from mlx_rnn.core.vocab import Indexer

TASKS = ("classify", "lm")

#: The parity bars. tests/test_parity.py holds its tiny models to the absolute terms alone
#: (their logits are small); the relative term matters for trained models' large logits.
TOLERANCES = {
    "logits_abs": 1e-5,            # |logit_mlx - logit_torch| <= logits_abs + logits_rel * |logit_torch|
    "logits_rel": 1.3e-6,          # (torch.testing.assert_close's float32 atol and rtol)
    "log_prob_abs": 1e-3,          # |log P_mlx(dev) - log P_torch(dev)|, nats
    "perplexity_rel": 1e-5,        # |ppl_mlx - ppl_torch| / ppl_torch
    "prediction_logit_abs": 1e-5,  # predictions may differ only where both |logits| are below this
}


# ----- command line -------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog_name("compare.py"),
        description=("Run MLX and PyTorch on the same weights over the dev data and check that they agree: "
                     "max |logit difference|, both log probabilities and perplexities of the dev text (LM), "
                     "both accuracies and agreeing predictions (classifier). Prints a summary and the result "
                     "JSON keyed by task, each with its tolerances and whether it passed."),
        epilog=("Tolerances: logits |mlx - torch| <= %g + %g |torch| (torch.testing's float32 rule); dev log "
                "probability %g nats absolute; perplexity %g relative; predictions identical except where both "
                "|logits| < %g. Exit codes: 0 all within tolerance, 1 a tolerance broken, 2 bad input or usage, "
                "3 training diverged (--train), 130 interrupted."
                % (TOLERANCES["logits_abs"], TOLERANCES["logits_rel"], TOLERANCES["log_prob_abs"],
                   TOLERANCES["perplexity_rel"], TOLERANCES["prediction_logit_abs"])))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR",
                     help="a checkpoint directory (config.json + model.safetensors), or a directory holding "
                          "classify/ and lm/ checkpoints as written by --task both --save DIR")
    src.add_argument("--train", action="store_true",
                     help="first train a small checkpoint of each task (--task) with the runner, then compare")
    p.add_argument("--task", choices=("classify", "lm", "both"), default="both",
                   help="which task(s) to compare (default both: every checkpoint found)")
    p.add_argument("--data-dir", help="directory with the dev files (default $MLX_RNN_DATA, else ./data)")
    p.add_argument("--device-mlx", choices=("auto", "gpu", "cpu"), default="cpu",
                   help="MLX device (default cpu)")
    p.add_argument("--device-torch", choices=("auto", "mps", "cuda", "cpu"), default="cpu",
                   help="PyTorch device (default cpu)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 in float32 matrix products on a GPU in both frameworks (default: full "
                        "float32, which the tolerances assume)")
    p.add_argument("--output-json", metavar="PATH", help="also write the result JSON here")
    t = p.add_argument_group("with --train")
    t.add_argument("--train-framework", choices=("mlx", "torch"), default="mlx",
                   help="framework that trains the checkpoint (default mlx)")
    t.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    t.add_argument("--hidden-size", type=int, default=64, help="LSTM hidden size (default 64)")
    t.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    t.add_argument("--val-fraction", type=float,
                   help="share of the training data held out for model selection (default: the trainers' 0.05)")
    t.add_argument("--save", metavar="DIR",
                   help="keep the trained checkpoint(s) here (DIR/classify, DIR/lm); default a temporary "
                        "directory removed afterwards")
    return p


# ----- which checkpoints -----------------------------------------------------------------
def find_checkpoints(path, task: str = "both") -> dict:
    """``{task: checkpoint dir}`` for ``path``: a single checkpoint or a ``classify/`` + ``lm/`` parent.

    Raises:
        CheckpointError: nothing usable found, or the single checkpoint is of the other task.
    """
    path = Path(path)
    if not path.is_dir():
        raise ckpt.CheckpointError(f"{path}: checkpoint directory not found")
    wanted = TASKS if task == "both" else (task,)
    if (path / "config.json").is_file():
        found = ckpt.read_config(path).task
        if found not in wanted:
            raise ckpt.CheckpointError(f"{path}: checkpoint is for task {found!r}, not {task!r}")
        return {found: path}
    out = {t: path / t for t in wanted if (path / t / "config.json").is_file()}
    if not out:
        raise ckpt.CheckpointError(f"{path}: no checkpoint found (expected config.json there, or in "
                                   + " or ".join(f"{t}/" for t in wanted) + ")")
    if task != "both" and task not in out:
        raise ckpt.CheckpointError(f"{path}: no {task}/ checkpoint")
    return out


# ----- the comparisons -----------------------------------------------------------------
def logits_agree(a: np.ndarray, b: np.ndarray, tol: dict) -> tuple[bool, float]:
    """Whether ``|a - b| <= logits_abs + logits_rel * |b|`` everywhere, and the worst ratio.

    ``a`` (MLX) and ``b`` (PyTorch, the reference) are float64 arrays of one shape; the
    rule is ``torch.testing.assert_close``'s. The ratio is the largest
    ``|a - b| / (logits_abs + logits_rel * |b|)`` (0.0 for empty arrays); it is <= 1
    exactly when they agree (for positive tolerances)."""
    if a.size == 0:
        return True, 0.0
    diff, allowed = np.abs(a - b), tol["logits_abs"] + tol["logits_rel"] * np.abs(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(diff / allowed))
    return bool(np.all(diff <= allowed)), ratio


def compare_classify(mlx_wrapper, torch_wrapper, texts: list[str], labels, tol: dict | None = None) -> dict:
    """Compare two classifier wrappers on ``texts`` (labels 0/1); returns the task's bundle."""
    tol = dict(TOLERANCES, **(tol or {}))
    a = mlx_wrapper.logits(texts).astype(np.float64)
    b = torch_wrapper.logits(texts).astype(np.float64)
    pa, pb = (a >= 0).astype(np.int32), (b >= 0).astype(np.int32)
    labels = np.asarray(labels)
    differ = pa != pb
    small = np.maximum(np.abs(a), np.abs(b)) < tol["prediction_logit_abs"]
    max_diff = float(np.max(np.abs(a - b))) if len(texts) else 0.0
    logits_ok, ratio = logits_agree(a, b, tol)
    checks = {
        "logits": logits_ok,
        "predictions": bool(np.all(~differ | small)),
    }
    return {
        "total": int(labels.size),
        "max_abs_logit_diff": max_diff,
        "max_logit_diff_ratio": ratio,
        "predictions_agree": int((~differ).sum()),
        "predictions_disagree": int(differ.sum()),
        "disagree_with_small_logit": int((differ & small).sum()),
        "mlx": classification_bundle(pa, labels),
        "torch": classification_bundle(pb, labels),
        "tolerances": {k: tol[k] for k in ("logits_abs", "logits_rel", "prediction_logit_abs")},
        "checks": checks,
        "passed": all(checks.values()),
    }


def compare_lm(mlx_wrapper, torch_wrapper, text: str, context: str = " ", tol: dict | None = None) -> dict:
    """Compare two LM wrappers on ``text`` scored after ``context``; returns the task's bundle."""
    tol = dict(TOLERANCES, **(tol or {}))
    context = context or " "
    scored = context + text[:-1]  # the inputs whose next-symbol predictions are scored
    # raw logits (before calibration), through the same path as scoring
    la = mlx_wrapper.logits_sequence(scored).astype(np.float64)
    lb = torch_wrapper.logits_sequence(scored).astype(np.float64)
    max_diff = float(np.max(np.abs(la - lb)))
    logits_ok, ratio = logits_agree(la, lb, tol)
    ba = lm_bundle(mlx_wrapper, mlx_wrapper.vocab, text, context)
    bb = lm_bundle(torch_wrapper, torch_wrapper.vocab, text, context)
    lp_diff = abs(ba["log_prob"] - bb["log_prob"])
    ppl_rel = abs(ba["perplexity"] - bb["perplexity"]) / bb["perplexity"]
    checks = {
        "logits": logits_ok,
        "log_prob": lp_diff <= tol["log_prob_abs"],
        "perplexity": ppl_rel <= tol["perplexity_rel"],
    }
    return {
        "num_chars": len(text),
        "max_abs_logit_diff": max_diff,
        "max_logit_diff_ratio": ratio,
        "log_prob_abs_diff": lp_diff,
        "perplexity_rel_diff": ppl_rel,
        "mlx": ba,
        "torch": bb,
        "tolerances": {k: tol[k] for k in ("logits_abs", "logits_rel", "log_prob_abs", "perplexity_rel")},
        "checks": checks,
        "passed": all(checks.values()),
    }


def _logit_tol(b: dict) -> str:
    t = b["tolerances"]
    return f"tol {t['logits_abs']:g} + {t['logits_rel']:g} |logit|; worst {b['max_logit_diff_ratio']:.2f} of it"


def summary_lines(task: str, b: dict) -> list[str]:
    """Human-readable lines for one task's bundle."""
    mark = "PASS" if b["passed"] else "FAIL"
    if task == "classify":
        m, t = b["mlx"], b["torch"]
        return [
            f"[classify] {mark}  max |logit diff| {b['max_abs_logit_diff']:.3e} ({_logit_tol(b)})"
            f" over {b['total']} dev examples",
            f"[classify] accuracy mlx {m['accuracy']:.2f}% ({m['correct']}/{m['total']})  "
            f"torch {t['accuracy']:.2f}% ({t['correct']}/{t['total']})",
            f"[classify] predictions agree {b['predictions_agree']}/{b['total']}; disagree {b['predictions_disagree']}"
            f" (of which |logit| < {b['tolerances']['prediction_logit_abs']:g}: {b['disagree_with_small_logit']})",
        ]
    m, t = b["mlx"], b["torch"]
    return [
        f"[lm] {mark}  max |logit diff| {b['max_abs_logit_diff']:.3e} ({_logit_tol(b)})"
        f" over {b['num_chars']} dev positions",
        f"[lm] log prob mlx {m['log_prob']:.6f}  torch {t['log_prob']:.6f}  |diff| {b['log_prob_abs_diff']:.3e}"
        f" (tol {b['tolerances']['log_prob_abs']:g})",
        f"[lm] perplexity mlx {m['perplexity']:.6f}  torch {t['perplexity']:.6f}  rel diff "
        f"{b['perplexity_rel_diff']:.3e} (tol {b['tolerances']['perplexity_rel']:g})",
        f"[lm] sane mlx {m['sane']} torch {t['sane']}; normalizes mlx {m['normalizes']} torch {t['normalizes']}",
    ]


# ----- optional training -----------------------------------------------------------------
def train_checkpoints(args, data_dir: Path, tasks: list[str], save_root: Path, log=print) -> dict:
    """Train a small checkpoint per task with the shared runner; returns ``{task: (dir, bundle)}``."""
    from mlx_rnn.core.config import make_config
    from mlx_rnn.core import backend
    from mlx_rnn.core.taskdata import load_task_data
    from mlx_rnn.run.fit import Outputs, train_task

    from mlx_rnn.core.outputs import check_dir_output
    from mlx_rnn.core.savedir import prepare_save_dir

    # refuse a bad --save before any training, as the trainers do
    if save_root.exists() and not save_root.is_dir():
        raise ValueError(f"--save {save_root}: exists and is not a directory")
    check_dir_output(save_root)
    for task in tasks:
        if (save_root / task / "config.json").exists():
            raise ValueError(f"--save {save_root}: {save_root / task} already holds a checkpoint; save somewhere else")
    for task in tasks:  # locked for the run, what a crash left cleaned up (mlx_rnn.core.savedir)
        prepare_save_dir(save_root / task, f"--save {save_root}")
    fw = backend.train_module(args.train_framework)
    device = _select(fw, args.train_framework, args.device_mlx if args.train_framework == "mlx" else args.device_torch)
    out = {}
    for task in tasks:
        given = dict(epochs=args.epochs, hidden_size=args.hidden_size, seed=args.seed, val_fraction=args.val_fraction)
        cfg = make_config(task, **{k: v for k, v in given.items() if v is not None}, device=device,
                          precision=fw.precision())
        data = load_task_data(task, data_dir, Indexer(cfg.vocab), cfg.val_fraction, cfg.seed)
        save_dir = save_root / task
        log(f"[{task}] training with {fw.FRAMEWORK} {fw.framework_version()} on {device} "
            f"({args.epochs} epoch(s), hidden {args.hidden_size}) -> {save_dir}")
        bundle = train_task(fw, cfg, data, Outputs(save_dir, quiet=True, log=log), lambda: False)
        out[task] = (save_dir, bundle)
    return out


# ----- main ---------------------------------------------------------------------------
def compare_checkpoint(task: str, path: Path, data_dir: Path) -> dict:
    """Load ``path`` in both frameworks (on the devices chosen with ``select_device``) and
    compare them on the task's dev data."""
    from mlx_rnn.core import backend

    config = ckpt.read_config(path)
    vocab = Indexer(config.vocab)
    if task == "classify":
        dev = load_examples(data_dir / CLASSIFY_FILES["dev_consonant"], data_dir / CLASSIFY_FILES["dev_vowel"], vocab)
    else:  # an LM trained with --train-text: its own dev text
        own = own_text.default_dev_text(config, path)
        dev = own[0] if own else read_text(data_dir / LM_FILES["dev"], vocab)
    mw, tw = backend.load("mlx", path, task), backend.load("torch", path, task)
    return compare_classify(mw, tw, dev.texts, dev.y) if task == "classify" else compare_lm(mw, tw, dev, " ")


def _select_devices(mlx_device: str, torch_device: str, tf32: bool) -> tuple[str, str]:
    """Both frameworks' devices, and their precision: full float32 (what parity means) unless
    ``tf32`` (``--tf32``; mlx_rnn.core.precision)."""
    from mlx_rnn.core import backend

    out = []
    for framework, device in (("mlx", mlx_device), ("torch", torch_device)):
        fw = backend.train_module(framework)
        out.append(_select(fw, framework, device))
        fw.set_tf32(tf32)
    return out[0], out[1]


def _select(fw, framework: str, device: str) -> str:
    """``fw.select_device(device)``, its error naming this script's flag (--device-mlx or
    --device-torch) instead of the trainers' --device."""
    try:
        return fw.select_device(device)
    except ValueError as e:
        raise ValueError(str(e).replace("--device ", f"--device-{framework} ")) from None


def _precisions() -> dict:
    """``{"mlx": "float32" or "tf32", "torch": ...}`` on the devices selected now."""
    from mlx_rnn.core import backend

    return {name: backend.train_module(name).precision() for name in ("mlx", "torch")}


def main(argv=None) -> int:
    """Entry point of ``scripts/compare.py``; returns the exit code (docs/design.md)."""
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    tmp = None
    try:
        check_output_json(args.output_json)
        if args.train and args.epochs < 1:
            raise ValueError(f"--epochs must be at least 1 (got {args.epochs})")
        if args.train and args.hidden_size < 1:
            raise ValueError(f"--hidden-size must be at least 1 (got {args.hidden_size})")
        if args.train and not args.save:
            tmp = tempfile.TemporaryDirectory(prefix="mlx_rnn_compare_")
        result = compare_all(args, Path(args.save) if args.save else Path(tmp.name) if tmp else None, t0)
        print_result(result, args.output_json)
        failed = [t for t, b in result.items() if not b["passed"]]
        if failed:
            print("error: parity tolerance broken for " + ", ".join(
                f"{t} ({', '.join(k for k, ok in result[t]['checks'].items() if not ok)})" for t in failed),
                file=sys.stderr)
            return EXIT_CHECK_FAILED
        return EXIT_OK
    except (Exception, KeyboardInterrupt) as e:
        return report_exit(e)
    finally:
        if tmp is not None:
            tmp.cleanup()


def compare_all(args, save_root: Path | None, t0: float) -> dict:
    """Compare every checkpoint asked for (``--train``: first trained into ``save_root``) and
    print each task's summary; returns the result JSON keyed by task (``t0``: the start, for the
    total time of a one-task run)."""
    data_dir = resolve_data_dir(args.data_dir)
    try:
        import torch
    except ImportError as e:
        raise ValueError(f"PyTorch is not installed ({e}); install the 'torch' extra") from None
    import mlx_rnn.device  # noqa: F401  (before mlx.core: preloads OpenBLAS on Linux, refuses a bad MLX_RNN_BLAS)
    import mlx.core as mx

    mlx_device, torch_device = _select_devices(args.device_mlx, args.device_torch, args.tf32)
    trained = {}
    if args.train:
        tasks = list(TASKS) if args.task == "both" else [args.task]
        trained = train_checkpoints(args, data_dir, tasks, save_root)
        found = {t: d for t, (d, _) in trained.items()}
        # training may have switched a framework's device: put both back as asked
        mlx_device, torch_device = _select_devices(args.device_mlx, args.device_torch, args.tf32)
    else:
        found = find_checkpoints(args.checkpoint, args.task)
    result = {}
    for task, path in found.items():
        t_task = time.perf_counter()
        bundle = compare_checkpoint(task, path, data_dir)
        tb = trained.get(task, (None, {}))[1]
        bundle.update(
            framework="mlx+torch", device=f"{mlx_device}+{torch_device}",
            frameworks={"mlx": mx.__version__, "torch": torch.__version__},
            devices={"mlx": mlx_device, "torch": torch_device}, precision=_precisions(),
            checkpoint=str(path),
            epochs=tb.get("epochs"), epoch_times_s=tb.get("epoch_times_s", []),
            train_time_s=tb.get("train_time_s"), total_time_s=time.perf_counter() - t_task,
            config=ckpt.read_config_json(path))
        result[task] = bundle
        for line in summary_lines(task, bundle):
            print(line, flush=True)
    if len(result) == 1:
        next(iter(result.values()))["total_time_s"] = time.perf_counter() - t0
    return result
