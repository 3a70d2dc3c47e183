"""The training driver shared by ``train_mlx.py`` and ``train_torch.py``.

Framework-neutral: it reads the data, asks a framework's ``train`` module
(:mod:`mlx_rnn.train` or :mod:`torch_ref.train`) for a ``Trainer``, runs the epochs,
keeps the best weights on the validation slice, writes checkpoints, resumable state
and ``metrics.jsonl``, and builds the result JSON of DESIGN.md.
"""

from __future__ import annotations

import importlib
import json
import math
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .config import build_parser, resolve_config
from .data import CLASSIFY_FILES, LM_FILES, DataError, check_data_dir, load_examples, read_text, resolve_data_dir
from .metrics import classification_bundle, lm_bundle, perplexity_figures
from .vocab import Indexer

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Interrupted(RuntimeError):
    """The user pressed Ctrl-C; resumable state was saved (or could not be)."""


def framework_module(name: str):
    """The ``train`` module of framework ``name`` ("mlx" or "torch")."""
    if name == "mlx":
        return importlib.import_module("mlx_rnn.train")
    try:
        return importlib.import_module("torch_ref.train")
    except ImportError as e:
        raise ValueError(f"PyTorch is not installed ({e}); install the 'torch' extra") from None


# ----- data ---------------------------------------------------------------------
def load_task_data(task: str, data_dir: Path, vocab: Indexer, val_fraction: float, seed: int) -> dict:
    """Read and encode one task's files; carve the validation slice from the training data.

    Returns a dict with "train" (as the Trainer expects), "val", "dev" and raw texts.
    Raises DataError for missing or bad files.
    """
    if task == "classify":
        names = list(CLASSIFY_FILES.values())
        check_data_dir(data_dir, names)
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
               "train_texts": [train.texts[i] for i in train_idx]}
        lm_path = data_dir / LM_FILES["train"]
        out["lm_text"] = read_text(lm_path, vocab) if lm_path.is_file() else None
        return out
    names = list(LM_FILES.values())
    check_data_dir(data_dir, names)
    text = read_text(data_dir / LM_FILES["train"], vocab)
    dev = read_text(data_dir / LM_FILES["dev"], vocab)
    n_val = max(2, int(round(len(text) * val_fraction)))
    return {"train": vocab.encode(text[:-n_val]), "val": text[-n_val:], "dev": dev}


def contamination(dev_texts: list[str], train_texts: list[str], lm_text: str | None) -> dict:
    """How many dev windows occur verbatim in the classifier's and the LM's training data."""
    train_set = set(train_texts)
    out = {"dev_windows_in_classifier_train": sum(t in train_set for t in dev_texts)}
    if lm_text is not None:
        out["dev_windows_in_lm_train"] = sum(t in lm_text for t in dev_texts)
    return out


# ----- evaluation through the wrapper API ---------------------------------------------
def bce_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of float logits against 0/1 labels."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def validation_loss(task: str, wrapper, val) -> float:
    """The model-selection metric: mean loss on the validation slice (nats; lower is better)."""
    if task == "classify":
        texts, labels = val
        return bce_from_logits(wrapper.logits(texts), labels)
    text = val
    return -wrapper.get_log_prob_sequence(text[1:], text[0]) / (len(text) - 1)


def dev_summary(task: str, wrapper, dev) -> tuple[dict, str]:
    """Dev figures after an epoch: (dict for metrics.jsonl, short text for the epoch line)."""
    if task == "classify":
        texts, labels = dev
        b = classification_bundle(wrapper.predict_batch(texts), labels)
        return {"dev_accuracy": b["accuracy"]}, f"dev acc {b['accuracy']:.2f}%"
    lp = wrapper.get_log_prob_sequence(dev, " ")
    f = perplexity_figures(lp, len(dev))
    return ({"dev_perplexity": f["perplexity"], "dev_bits_per_char": f["bits_per_char"]},
            f"dev ppl {f['perplexity']:.3f} ({f['bits_per_char']:.3f} bpc)")


def final_bundle(task: str, wrapper, data: dict) -> dict:
    """The task's result bundle on the dev data (DESIGN.md, "Result JSON")."""
    if task == "classify":
        texts, labels = data["dev"]
        out = classification_bundle(wrapper.predict_batch(texts), labels)
        out.update(contamination(texts, data["train_texts"], data.get("lm_text")))
        return out
    return lm_bundle(wrapper, wrapper.vocab, data["dev"], " ")


# ----- the epoch loop ---------------------------------------------------------------
class StopFlag:
    """SIGINT sets a flag the batch loop polls; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True
        print("\ninterrupt: finishing this step and saving resumable state (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._old)
        return False

    def __call__(self) -> bool:
        return self.set


def _progress(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=True if quiet else None,
                file=sys.stderr, dynamic_ncols=True)


def train_task(fw, task: str, cfg: dict, data: dict, save_dir: Path | None, resume_dir: Path | None,
               quiet: bool, stop: StopFlag, log=print) -> dict:
    """Train one task and return its result bundle (without the total time)."""
    trainer = fw.Trainer(cfg, data["train"])
    first_epoch, start_step, best_loss, best_epoch, bad_epochs = 0, 0, math.inf, -1, 0
    epoch_times: list[float] = []
    best_weights = None
    if resume_dir is not None:
        weights, tensors, state = ckpt.load_resume(resume_dir)
        trainer.load_weights(weights)
        trainer.load_training_state(tensors)
        first_epoch, start_step = state["epoch"], state["step"]
        trainer.global_step = state["global_step"]
        best_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
        bad_epochs, epoch_times = state["bad_epochs"], state["epoch_times_s"]
        if best_epoch >= 0:
            best_weights, _ = ckpt.load_checkpoint(resume_dir, task)
        log(f"[{task}] resuming from {resume_dir}: epoch {first_epoch + 1}, step {start_step}")

    def save_state(epoch: int, step: int) -> None:
        if save_dir is None:
            return
        ckpt.save_resume(save_dir, trainer.weights(), trainer.training_state(), {
            "epoch": epoch, "step": step, "global_step": trainer.global_step,
            "data_order_seed": cfg["seed"], "best_val_loss": best_loss, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "epoch_times_s": epoch_times,
            "framework": fw.FRAMEWORK, "framework_version": fw.framework_version(),
        })

    writer = {"framework": fw.FRAMEWORK, "framework_version": fw.framework_version()}
    t_train = time.perf_counter()
    epochs_run = first_epoch
    for epoch in range(first_epoch, cfg["epochs"]):
        bar = _progress(trainer.steps_per_epoch - start_step, f"{task} epoch {epoch + 1}/{cfg['epochs']}", quiet)
        res = trainer.train_epoch(epoch, start_step, should_stop=stop, progress=bar)
        bar.close()
        if res.nonfinite_step is not None:
            raise Diverged(f"[{task}] training diverged: non-finite loss at epoch {epoch + 1}, "
                           f"step {res.nonfinite_step + 1}"
                           + (f"; the last good checkpoint is in {save_dir}" if save_dir and best_epoch >= 0 else "")
                           + " (try a lower --lr or --clip-norm)")
        if res.interrupted:
            if save_dir is None:
                save_dir = Path("checkpoints") / f"interrupted-{task}-{datetime.now():%Y%m%d-%H%M%S}"
                ckpt.save_checkpoint(save_dir, best_weights or trainer.weights(), dict(cfg, **writer))
            save_state(epoch, trainer.epoch_step)
            raise Interrupted(f"[{task}] interrupted at epoch {epoch + 1}, step {trainer.epoch_step}; "
                              f"resume with --resume {save_dir}")
        start_step = 0
        epoch_times.append(res.time_s)
        wrapper = trainer.wrapper()
        val_loss = validation_loss(task, wrapper, data["val"])
        dev_fig, dev_text = dev_summary(task, wrapper, data["dev"])
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_weights = trainer.weights()
        else:
            bad_epochs += 1
        epochs_run = epoch + 1
        extra = f"  val ppl {math.exp(val_loss):.3f}" if task == "lm" else f"  val loss {val_loss:.4f}"
        log(f"[{task}] epoch {epoch + 1:>3}/{cfg['epochs']}  train loss {res.mean_loss:.4f}{extra}"
            f"  {dev_text}  epoch {res.time_s:.2f} s{'  *' if improved else ''}")
        if save_dir is not None:
            if improved:
                ckpt.save_checkpoint(save_dir, best_weights, dict(cfg, **writer, best_epoch=best_epoch + 1))
            ckpt.append_jsonl(save_dir / "metrics.jsonl", dict(
                epoch=epoch + 1, train_loss=res.mean_loss, val_loss=val_loss, epoch_time_s=res.time_s,
                steps=res.steps, best=improved, **dev_fig))
            if (epoch + 1) % cfg["save_every"] == 0 or epoch + 1 == cfg["epochs"]:
                save_state(epoch + 1, 0)
        if cfg["patience"] and bad_epochs >= cfg["patience"]:
            log(f"[{task}] early stop: no better validation loss for {bad_epochs} epochs")
            break
    train_time = time.perf_counter() - t_train
    if best_weights is not None:
        trainer.load_weights(best_weights)
    bundle = final_bundle(task, trainer.wrapper(), data)
    bundle.update(framework=fw.FRAMEWORK, device=cfg["device"], epochs=epochs_run,
                  best_epoch=best_epoch + 1, epoch_times_s=epoch_times, train_time_s=train_time,
                  config=dict(cfg, **writer))
    return bundle


def print_result(result: dict, output_json: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if output_json:
        ckpt.atomic_write_bytes(output_json, (text + "\n").encode())


def main(framework: str, argv=None) -> int:
    """Entry point of both trainers; returns the process exit code (DESIGN.md)."""
    t0 = time.perf_counter()
    parser = build_parser(framework)
    args = parser.parse_args(argv)
    tasks = ["classify", "lm"] if args.task == "both" else [args.task]
    try:
        fw = framework_module(framework)
        device = fw.select_device(args.device)
        data_dir = resolve_data_dir(args.data_dir)
        result = {}
        with StopFlag() as stop:
            for task in tasks:
                t_task = time.perf_counter() if len(tasks) > 1 else t0
                resume_dir = None
                if args.resume:
                    resume_dir = Path(args.resume) / task if len(tasks) > 1 else Path(args.resume)
                    cfg = ckpt.read_config(resume_dir)
                    if cfg["task"] != task:
                        raise ckpt.CheckpointError(f"{resume_dir}: checkpoint is for task {cfg['task']!r}, not {task!r}")
                    if args.epochs is not None:
                        cfg["epochs"] = args.epochs
                else:
                    cfg = resolve_config(args, task)
                cfg["device"] = device
                vocab = Indexer(cfg["vocab"])
                data = load_task_data(task, data_dir, vocab, cfg["val_fraction"], cfg["seed"])
                save_dir = None
                if args.save:
                    save_dir = Path(args.save) / task if len(tasks) > 1 else Path(args.save)
                elif resume_dir is not None:
                    save_dir = resume_dir
                print(f"[{task}] {fw.FRAMEWORK} {fw.framework_version()} on {device}; {fw.describe_backend()}",
                      flush=True)
                bundle = train_task(fw, task, cfg, data, save_dir, resume_dir, args.quiet, stop)
                bundle["total_time_s"] = time.perf_counter() - t_task
                result[task] = bundle
                if task == "classify" and bundle.get("dev_windows_in_lm_train"):
                    print(f"[classify] note: {bundle['dev_windows_in_lm_train']} of {bundle['total']} dev windows occur "
                          f"verbatim in text8-100k.txt and {bundle['dev_windows_in_classifier_train']} in the "
                          "classifier's training examples", flush=True)
        print_result(result, args.output_json)
        return EXIT_OK
    except (DataError, ckpt.CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except Interrupted as e:
        print(f"{e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
