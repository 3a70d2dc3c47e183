"""The training driver shared by ``train_mlx.py`` and ``train_torch.py``.

Framework-neutral: it reads the data, asks a framework's ``train`` module
(:mod:`mlx_rnn.train` or :mod:`torch_ref.train`) for a ``Trainer``, runs the epochs,
keeps the best weights on the validation slice, writes checkpoints, resumable state
and ``metrics.jsonl``, and builds the result JSON of DESIGN.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np

from mlx_rnn.core import backend
from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import corpus as corpus_mod
from mlx_rnn.core import distributed
from mlx_rnn.core import own_text
from mlx_rnn.core.config import RESUME_OVERRIDABLE, TASK_DEFAULTS, COMMON_DEFAULTS, build_parser, resolve_config, validate_config
from mlx_rnn.core.data import (corpus_alphabet, CLASSIFY_FILES, LM_FILES, DataError, MissingData, check_data_dir, data_dir_complete,
                   data_dir_given_by, load_examples, read_text, resolve_data_dir)
from mlx_rnn.core.calibration import T_RANGE, fit_temperature, mean_nll
from mlx_rnn.core.memory import allocation_message, check_fits
from mlx_rnn.core.metrics import classification_bundle, lm_bundle, perplexity_figures
from mlx_rnn.core.outputs import check_dir_output, check_file_output, check_plot_output
from mlx_rnn.core.savedir import check_save_dirs, prepare_save_dir, unlock_all
from mlx_rnn.core.transfer import heldout_note, heldout_windows, lm_init_weights, zero_shot_predict
from mlx_rnn.core.vocab import Indexer

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss."""


class Interrupted(RuntimeError):
    """The user pressed Ctrl-C; resumable state was saved in ``save_dir``."""

    def __init__(self, message: str, task: str = "", save_dir: Path | None = None):
        super().__init__(message)
        self.task, self.save_dir = task, save_dir


class CheckFailed(RuntimeError):
    """A check failed (exit code 1), e.g. a downloaded file's checksum."""


_log = partial(print, flush=True)


# ----- data ---------------------------------------------------------------------
def task_files(task: str) -> list[str]:
    """The data files a task needs (the classifier also reads text8-100k.txt when present)."""
    return list(CLASSIFY_FILES.values()) if task == "classify" else list(LM_FILES.values())


def load_task_data(task: str, data_dir: Path, vocab: Indexer, val_fraction: float, seed: int,
                   normalize: bool = False) -> dict:
    """Read and encode one task's files; carve the validation slice from the training data.

    ``normalize`` maps the LM text files onto the vocabulary first (``--normalize``).
    Returns a dict with "train" (as the Trainer expects), "val", "dev" and raw texts.
    Raises DataError for missing or bad files.
    """
    data_dir = Path(data_dir)
    check_data_dir(data_dir, task_files(task))
    if task == "classify":
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
        # Only for the contamination figures: a missing or unreadable LM file just drops them.
        try:
            out["lm_text"] = read_text(data_dir / LM_FILES["train"], vocab, normalize=normalize)
        except DataError:
            out["lm_text"] = None
        # Honest held-out windows: text8-dev.txt is not inside text8-100k.txt (mlx_rnn/core/transfer.py).
        try:
            out["heldout"] = heldout_windows(read_text(data_dir / LM_FILES["dev"], vocab, normalize=normalize))
        except DataError:
            out["heldout"] = None
        return out
    text = read_text(data_dir / LM_FILES["train"], vocab, normalize=normalize)
    dev = read_text(data_dir / LM_FILES["dev"], vocab, normalize=normalize)
    if len(text) < 4:
        raise DataError(data_dir / LM_FILES["train"], f"text of {len(text)} characters is too short to train on")
    if len(dev) < 1:
        raise DataError(data_dir / LM_FILES["dev"], "no text to evaluate")
    train_text, val = split_validation_blocks(text, val_fraction)
    return {"train": vocab.encode(train_text), "val": val, "dev": dev}


#: LM validation: at most this many blocks, each at least VAL_BLOCK_MIN characters.
VAL_BLOCKS, VAL_BLOCK_MIN = 10, 100


def split_validation_blocks(text: str, val_fraction: float) -> tuple[str, list[str]]:
    """Carve the LM validation text out of the training text, as evenly spaced blocks.

    The text is cut into k equal segments (k = VAL_BLOCKS, fewer for a short text so that a
    block has at least VAL_BLOCK_MIN characters) and the last ``len(text) * val_fraction / k``
    characters of each segment are held out. Spread over the whole text, the blocks estimate
    the loss on typical text; one contiguous tail would be a single article (the last 5 % of
    text8-100k is one about Abu Dhabi's postal history, mostly spelled-out numbers).

    Returns:
        (training text with the blocks removed, list of k validation blocks); for a text too
        short for blocks of VAL_BLOCK_MIN characters, one block: the last share of the text.
    """
    n_val = max(2, int(round(len(text) * val_fraction)))
    k = max(1, min(VAL_BLOCKS, n_val // VAL_BLOCK_MIN))
    block, seg = n_val // k, len(text) // k
    train, val = [], []
    for i in range(k):
        start, end = i * seg, (i + 1) * seg if i < k - 1 else len(text)
        train.append(text[start:end - block])
        val.append(text[end - block:end])
    return "".join(train), val


def steps_per_epoch(cfg: dict, train) -> int:
    """Training steps in one epoch (what the frameworks' ``Trainer.steps_per_epoch`` computes;
    distributed: of the global batch, batch_size x ranks)."""
    return distributed.steps_per_epoch(cfg["task"], train, cfg["batch_size"], cfg["seq_len"],
                                       distributed.current().world_size)


def check_trainable(cfg: dict, train, where) -> int:
    """``steps_per_epoch``, or ValueError (one line) when the data gives no full step."""
    size = len(train[1]) if cfg["task"] == "classify" else len(train)
    what = "training examples" if cfg["task"] == "classify" else "training characters"
    try:
        steps = steps_per_epoch(cfg, train)
    except ValueError:
        steps = 0
    world = distributed.current().world_size
    if cfg["task"] == "classify" and cfg["batch_size"] * world > size:
        raise ValueError(f"{where}: --batch-size {cfg['batch_size']}" + (f" x {world} ranks" if world > 1 else "")
                         + f" is larger than the {size} {what} (after the validation slice); "
                         f"use a batch size of at most {size // world}")
    if steps < 1:
        hint = "--batch-size" if cfg["task"] == "classify" else "--batch-size or --seq-len"
        raise ValueError(f"{where}: {size} {what} (after the validation slice) give no full training step "
                         f"with batch size {cfg['batch_size']}" + (f" and sequence length {cfg['seq_len']}"
                                                                   if cfg["task"] == "lm" else "")
                         + f"; use more data or a smaller {hint}")
    return steps


def data_fingerprint(train) -> str:
    """sha256 of the encoded training data (recorded with resumable state)."""
    if hasattr(train, "fingerprint"):  # a corpus split read from disk (--corpus)
        return train.fingerprint()
    h = hashlib.sha256()
    for arr in (train if isinstance(train, tuple) else (train,)):
        h.update(np.ascontiguousarray(arr, dtype=np.int32).tobytes())
    return h.hexdigest()


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
    if isinstance(val, corpus_mod.CorpusSplit):  # --corpus: batched streams over the validation split
        return -corpus_mod.split_figures(wrapper, val)["avg_log_prob"]
    # LM: the validation blocks (split_validation_blocks), each scored from its first character,
    # by the raw model (before any calibration), in one batched pass per block length
    logits, targets = validation_logits(wrapper, val)
    return mean_nll(logits, targets, 1.0)


def validation_logits(wrapper, blocks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits float32 (N, V) and targets int (N,) of the LM validation blocks, each block scored
    from its first character (N = sum of len(block) - 1); blocks of one length share a batch."""
    logits, targets = [], []
    for length in sorted({len(b) for b in blocks}):
        group = [b for b in blocks if len(b) == length]
        out = wrapper.logits_batch([b[:-1] for b in group])
        logits.append(out.reshape(-1, out.shape[-1]))
        targets.append(np.concatenate([wrapper.vocab.encode(b[1:]) for b in group]))
    return np.concatenate(logits), np.concatenate(targets)


def calibrate_on_validation(wrapper, blocks: list[str]) -> tuple[float, float, float]:
    """Fit the LM's calibration temperature on the validation blocks (:mod:`mlx_rnn.core.calibration`).

    Each block is scored from its first character, as in :func:`validation_loss`.

    Returns:
        (temperature, validation loss before, validation loss after), losses in nats per character.
    """
    logits, targets = validation_logits(wrapper, blocks)
    temperature = fit_temperature(logits, targets)
    return temperature, mean_nll(logits, targets, 1.0), mean_nll(logits, targets, temperature)


def dev_summary(task: str, wrapper, dev) -> tuple[dict, str]:
    """Dev figures after an epoch: (dict for metrics.jsonl, short text for the epoch line)."""
    if task == "classify":
        texts, labels = dev
        b = classification_bundle(wrapper.predict_batch(texts), labels)
        return {"dev_accuracy": b["accuracy"]}, f"dev acc {b['accuracy']:.2f}%"
    if isinstance(dev, corpus_mod.CorpusSplit):  # --corpus: the validation split, evaluated once per epoch
        f = corpus_mod.split_figures(wrapper, dev)
        return ({"valid_perplexity": f["perplexity"], "valid_bits_per_char": f["bits_per_char"]},
                f"valid {f['bits_per_char']:.3f} bpc")
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
        if data.get("heldout") and data["heldout"][0]:
            out["heldout"] = classification_bundle(wrapper.predict_batch(data["heldout"][0]), data["heldout"][1])
        return out
    if "corpus" in data:  # --corpus: figures of the test split, plus valid/test bits per char
        return corpus_mod.lm_corpus_bundle(wrapper, data)
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


# ----- resumable state ----------------------------------------------------------------
@dataclass
class ResumeState:
    """Resumable training state read from ``dir/resume`` and checked against the run's config."""

    dir: Path
    weights: dict
    tensors: dict
    state: dict
    best_weights: dict | None


def load_resume_state(resume_dir, task: str, cfg: dict, train, framework: str) -> ResumeState:
    """Read and check everything a resumed run needs, before anything is trained or written.

    Raises:
        CheckpointError: missing, corrupt, truncated or mismatched state (one line).
    """
    resume_dir = Path(resume_dir)
    weights, tensors, state = ckpt.load_resume(resume_dir)
    steps = steps_per_epoch(cfg, train)
    ckpt.check_resume(resume_dir, cfg, weights, tensors, state, framework, steps)
    best_weights = None
    if state["best_epoch"] >= 0:
        best_weights, best_cfg = ckpt.load_checkpoint(resume_dir, task)
        ckpt.check_weights(best_weights, cfg, resume_dir / "model.safetensors")
    return ResumeState(resume_dir, weights, tensors, state, best_weights)


def _restore(trainer, resume: ResumeState) -> None:
    """Load resumable state into a fresh trainer; any failure is a CheckpointError."""
    try:
        trainer.load_weights(resume.weights)
        trainer.load_training_state(resume.tensors)
    except ckpt.CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001  (framework errors: shapes, dtypes, missing keys)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ckpt.CheckpointError(f"{resume.dir / 'resume'}: cannot restore the training state ({first})") from None
    trainer.global_step = resume.state["global_step"]


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop metrics.jsonl lines of epochs after ``last_epoch`` (re-run after a crash)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("epoch", 0) > last_epoch:
                continue
        except (json.JSONDecodeError, AttributeError):
            continue  # a line a killed run left half-written
        keep.append(line)
    if len(keep) != len(lines):
        ckpt.atomic_write_bytes(path, "".join(keep).encode())


# ----- the epoch loop ---------------------------------------------------------------
def train_task(fw, task: str, cfg: dict, data: dict, save_dir: Path | None, resume_dir: Path | None,
               quiet: bool, stop, log=_log, *, resume: ResumeState | None = None,
               interrupt_dir: Path | None = None, plot_path: Path | None = None) -> dict:
    """Train one task and return its result bundle (without the total time).

    ``plot_path``: write a PNG of the training curves there (``--plot``).

    Args:
        save_dir: where the checkpoint, ``metrics.jsonl`` and resumable state go (None: nowhere,
            except on Ctrl-C, when they go to ``interrupt_dir``, by default
            ``checkpoints/interrupted-TASK-DATE``).
        resume_dir / resume: continue from this checkpoint directory (``resume``: its state,
            already read with :func:`load_resume_state`).
        stop: polled after every step; when true, resumable state is saved and
            :class:`Interrupted` raised.

    Raises:
        Diverged: a non-finite training or validation loss (nothing is saved for that epoch).
        Interrupted: ``stop()`` became true.
        CheckpointError: unusable resumable state.
    """
    if resume is None and resume_dir is not None:
        resume = load_resume_state(resume_dir, task, cfg, data["train"], fw.FRAMEWORK)
    save_dir = Path(save_dir) if save_dir is not None else None
    trainer = fw.Trainer(cfg, data["train"])
    if cfg.get("init_from_lm") and resume is None:
        lm_weights, lm_cfg = ckpt.load_checkpoint(cfg["init_from_lm"], "lm")
        trainer.load_weights({**trainer.weights(), **lm_init_weights(lm_weights, lm_cfg, Indexer(cfg["vocab"]))})
        log(f"[{task}] embedding and {cfg.get('cell', 'lstm').upper()} initialised from the LM {cfg['init_from_lm']}")
    if trainer.steps_per_epoch < 1:
        check_trainable(cfg, data["train"], "training data")
    first_epoch, start_step, best_loss, best_epoch, bad_epochs = 0, 0, math.inf, -1, 0
    epoch_times: list[float] = []
    best_weights = None
    fingerprint = data_fingerprint(data["train"])
    if resume is not None:
        state = resume.state
        _restore(trainer, resume)
        first_epoch, start_step = state["epoch"], state["step"]
        best_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
        bad_epochs, epoch_times = state["bad_epochs"], list(state["epoch_times_s"])
        best_weights = resume.best_weights
        if state.get("data_sha256", fingerprint) != fingerprint:
            log(f"[{task}] warning: the training data differ from those of the interrupted run; "
                "the resumed run will not match an uninterrupted one")
        if save_dir is not None and save_dir.resolve() == resume.dir.resolve():
            _truncate_metrics(save_dir / "metrics.jsonl", first_epoch)
        log(f"[{task}] resuming from {resume.dir}: epoch {first_epoch + 1}, step {start_step}")

    writer = {"framework": fw.FRAMEWORK, "framework_version": fw.framework_version()}

    def save_state(target: Path, epoch: int, step: int) -> None:
        ckpt.save_resume(target, trainer.weights(), trainer.training_state(), {
            "epoch": epoch, "step": step, "global_step": trainer.global_step,
            "data_order_seed": cfg["seed"], "data_sha256": fingerprint,
            "best_val_loss": best_loss if math.isfinite(best_loss) else None, "best_epoch": best_epoch,
            "bad_epochs": bad_epochs, "epoch_times_s": epoch_times,
            "framework": fw.FRAMEWORK, "framework_version": fw.framework_version(),
        })

    history = []  # per-epoch records for --plot (those before a resume come from metrics.jsonl)
    if resume is not None and save_dir is not None and (save_dir / "metrics.jsonl").is_file():
        history = [json.loads(ln) for ln in (save_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        for rec, elapsed in zip(history, np.cumsum(epoch_times)):
            rec.setdefault("elapsed_s", float(elapsed))
    t_train = time.perf_counter()
    epochs_run = first_epoch
    last_epoch = cfg["epochs"]
    if resume is not None and cfg["patience"] and bad_epochs >= cfg["patience"]:
        log(f"[{task}] already stopped early (no better validation loss for {bad_epochs} epochs)")
        last_epoch = first_epoch
    for epoch in range(first_epoch, last_epoch):
        bar = _progress(trainer.steps_per_epoch - start_step, f"{task} epoch {epoch + 1}/{cfg['epochs']}", quiet)
        res = trainer.train_epoch(epoch, start_step, should_stop=stop, progress=bar)
        bar.close()
        kept = (f"; the last good checkpoint is in {save_dir}" if save_dir is not None and best_epoch >= 0
                else "; nothing was saved" if save_dir is not None else "")
        if res.nonfinite_step is not None:
            raise Diverged(f"[{task}] training diverged: non-finite loss at epoch {epoch + 1}, "
                           f"step {res.nonfinite_step + 1}{kept} (try a lower --lr or --clip-norm)")
        if res.interrupted:
            target = save_dir
            if target is None:
                target = interrupt_dir or Path("checkpoints") / f"interrupted-{task}-{datetime.now():%Y%m%d-%H%M%S}"
            main_rank = distributed.current().is_main  # distributed: only rank 0 writes
            if main_rank:  # the state first: config.json, written last, commits the pair
                save_state(target, epoch, trainer.epoch_step)
            if main_rank and (target != save_dir or best_epoch < 0):
                # the directory needs a checkpoint (config.json + weights) to be resumable
                ckpt.save_checkpoint(target, best_weights if best_weights is not None else trainer.weights(),
                                     dict(cfg, **writer, best_epoch=best_epoch + 1))
            raise Interrupted(f"[{task}] interrupted at epoch {epoch + 1}, step {trainer.epoch_step}; "
                              f"resume with --resume {target}", task, target)
        start_step = 0
        epoch_times.append(res.time_s)
        wrapper = trainer.wrapper()
        # distributed: rank 0's figure on every rank, so model selection and early stopping agree
        val_loss = distributed.current().from_main(validation_loss(task, wrapper, data["val"]))
        if not math.isfinite(val_loss):
            raise Diverged(f"[{task}] training diverged: non-finite validation loss after epoch {epoch + 1}, "
                           f"step {res.steps}{kept} (try a lower --lr or --clip-norm)")
        dev_fig, dev_text = dev_summary(task, wrapper, data["dev"])
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_weights = trainer.weights()
        else:
            bad_epochs += 1
        epochs_run = epoch + 1
        extra = (f"  val ppl {math.exp(val_loss) if val_loss < 709.0 else math.inf:.3f}" if task == "lm"
                 else f"  val loss {val_loss:.4f}")
        log(f"[{task}] epoch {epoch + 1:>3}/{cfg['epochs']}  train loss {res.mean_loss:.4f}{extra}"
            f"  {dev_text}  epoch {res.time_s:.2f} s{'  *' if improved else ''}")
        record = dict(epoch=epoch + 1, train_loss=res.mean_loss, val_loss=val_loss, epoch_time_s=res.time_s,
                      elapsed_s=sum(epoch_times), steps=res.steps, best=improved, **dev_fig)
        history.append(record)
        if save_dir is not None:
            # the first save commits config.json last, after the resumable state, so a directory
            # with a checkpoint can always be resumed (mlx_rnn.core.savedir)
            first = not (save_dir / "config.json").exists()
            if improved:
                ckpt.save_checkpoint(save_dir, best_weights, dict(cfg, **writer, best_epoch=best_epoch + 1),
                                     write_config=not first)
            ckpt.append_jsonl(save_dir / "metrics.jsonl", record)
            if first or (epoch + 1) % cfg["save_every"] == 0 or epoch + 1 == cfg["epochs"]:
                save_state(save_dir, epoch + 1, 0)
            if first and best_weights is not None:
                ckpt.save_checkpoint(save_dir, best_weights, dict(cfg, **writer, best_epoch=best_epoch + 1),
                                     write_weights=False)
        if cfg["patience"] and bad_epochs >= cfg["patience"]:
            log(f"[{task}] early stop: no better validation loss for {bad_epochs} epochs")
            if save_dir is not None:
                save_state(save_dir, epoch + 1, 0)
            break
    train_time = time.perf_counter() - t_train
    if plot_path is not None and history:
        from mlx_rnn.tools.plot import plot_history

        plot_history(history, plot_path, task, f"{task}: {fw.FRAMEWORK} on {cfg['device']}")
        log(f"[{task}] training curves written to {plot_path}")
    if best_weights is not None:
        trainer.load_weights(best_weights)
    wrapper = trainer.wrapper()
    final_cfg = dict(cfg, **writer)
    if task == "lm" and cfg.get("calibrate") and epochs_run > 0:
        if isinstance(data["val"], corpus_mod.CorpusSplit):
            log(f"[{task}] calibration skipped: not available with --corpus")
        else:
            temperature, before, after = calibrate_on_validation(wrapper, data["val"])
            wrapper.calibration_temperature = final_cfg["calibration_temperature"] = temperature
            edge = " (at the edge of the searched range)" if temperature in T_RANGE else ""
            log(f"[{task}] calibration temperature {temperature:.4f}{edge} (fitted on the validation slice): "
                f"val ppl {math.exp(before):.3f} -> {math.exp(after):.3f}")
    if task == "lm" and save_dir is not None and epochs_run > 0 and distributed.current().is_main:
        # the checkpoint's config must describe the model reported here (also when a resumed run
        # changes --calibrate without a better epoch)
        ckpt.save_checkpoint(save_dir, trainer.weights(), dict(final_cfg, best_epoch=best_epoch + 1))
    bundle = final_bundle(task, wrapper, data)
    bundle.update(framework=fw.FRAMEWORK, device=cfg["device"], epochs=epochs_run,
                  best_epoch=best_epoch + 1, epoch_times_s=epoch_times, train_time_s=train_time,
                  config=final_cfg)
    return bundle


def print_result(result: dict, output_json: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if output_json:
        ckpt.atomic_write_bytes(output_json, (text + "\n").encode())


# ----- the command line ------------------------------------------------------------------
def check_output_json(path, flag: str = "--output-json") -> None:
    """ValueError (one line) unless output file ``path`` (given with ``flag``) can be written
    (:func:`mlx_rnn.core.outputs.check_file_output`: not a directory, parents creatable, writable)."""
    check_file_output(path, flag)


@dataclass
class TaskPlan:
    """One task of a run, checked and read before anything is trained or written."""

    task: str
    cfg: dict
    data: dict | None = None
    save_dir: Path | None = None
    resume: ResumeState | None = None
    resume_dir: Path | None = None
    pending: Path | None = None  # resume/pending_config.json of a task not started yet
    read_time_s: float = 0.0


PENDING = "pending_config.json"


def _tasks_from_args(args) -> list[str]:
    if args.task:
        return ["classify", "lm"] if args.task == "both" else [args.task]
    if getattr(args, "train_text", None):
        return ["lm"]
    if args.resume:
        root = Path(args.resume)
        if (root / "config.json").exists():
            return [ckpt.read_config(root)["task"]]
        if (root / "resume" / PENDING).exists():
            return [_read_pending(root / "resume" / PENDING)["task"]]
    return ["classify", "lm"]


def _read_pending(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ckpt.CheckpointError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("task") not in ckpt.TASKS:
        raise ckpt.CheckpointError(f"{path}: not a task configuration")
    return cfg


def _resume_config(args, task: str, resume_dir: Path, pending: Path | None) -> dict:
    """The configuration of the run being resumed, with the flags a resumed run may change."""
    if pending is not None:
        cfg, where = _read_pending(pending), pending
    else:
        cfg, where = ckpt.read_config(resume_dir), resume_dir / "config.json"
    if cfg["task"] != task:
        raise ckpt.CheckpointError(f"{resume_dir}: checkpoint is for task {cfg['task']!r}, not {task!r}")
    # settings added later: a checkpoint written before them was trained without them
    cfg.setdefault("weight_drop", 0.0)
    cfg.setdefault("input_dropout", cfg.get("dropout"))  # older runs dropped the embedding at --dropout
    if task == "lm":
        cfg.setdefault("calibrate", False)
    cfg.pop("calibration_temperature", None)  # fitted again at the end of the resumed run
    if task == "classify":
        cfg.setdefault("prefix_weight", 0.0)
    keys = set(TASK_DEFAULTS[task]) | set(COMMON_DEFAULTS)
    missing = sorted(k for k in keys if k not in cfg)
    if missing:
        raise ckpt.CheckpointError(f"{where}: missing training settings {', '.join(missing)} (not written by a trainer?)")
    for key in sorted(keys):
        given = getattr(args, key, None)
        if given is None or key in RESUME_OVERRIDABLE or (key == "seq_len" and task == "classify"):
            continue
        if key == "input_dropout" and cfg[key] is None:  # unset: it followed --dropout
            cfg[key] = cfg["dropout"]
        if given != cfg[key]:
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{flag} {given} differs from the resumed run's {cfg[key]} ({where}); a resumed run "
                             "keeps its settings (only --epochs, --patience, --save-every and --calibrate may change)")
    for key in RESUME_OVERRIDABLE:
        if getattr(args, key, None) is not None and (key != "calibrate" or task == "lm"):
            cfg[key] = getattr(args, key)
    try:
        validate_config(cfg)
    except ValueError as e:
        if any(getattr(args, k, None) is not None for k in RESUME_OVERRIDABLE):
            raise
        raise ckpt.CheckpointError(f"{where}: bad setting: {e}") from None
    return cfg


def plan_run(framework: str, args) -> list[TaskPlan]:
    """Everything that can fail on bad input, done before any training or writing.

    Resolves and validates every task's configuration, the output paths, the data
    (building it with ``--download`` when missing) and any resumable state.

    Raises:
        ValueError, DataError, CheckpointError, OSError: bad input (exit code 2).
        CheckFailed: a downloaded file failed its checksum (exit code 1).
    """
    tasks = _tasks_from_args(args)
    multi = len(tasks) > 1
    own_text.check_flags(args, tasks)  # --train-text / --dev-text
    check_output_json(args.output_json)
    check_plot_output(args.plot)
    check_dir_output(args.save)
    check_dir_output(args.resume, "--resume")
    plans = []
    if (args.zero_shot_lm or args.init_from_lm) and "classify" not in tasks:
        raise ValueError(f"--{'zero-shot-lm' if args.zero_shot_lm else 'init-from-lm'} applies to the classifier: "
                         "use --task classify or both")
    if args.init_from_lm:
        fixed = [f"--{k.replace('_', '-')}" for k in ("embed_dim", "hidden_size", "num_layers", "cell")
                 if getattr(args, k, None) is not None]
        if fixed:
            raise ValueError(f"--init-from-lm takes the sizes from the LM checkpoint; drop {', '.join(fixed)}")
    if args.zero_shot_lm and ckpt.read_config(args.zero_shot_lm)["task"] != "lm":
        raise ckpt.CheckpointError(f"--zero-shot-lm {args.zero_shot_lm}: not a language-model checkpoint")
    if args.resume and not Path(args.resume).is_dir():
        raise ckpt.CheckpointError(f"{args.resume}: checkpoint directory not found (nothing to resume)")
    for task in tasks:
        plan = TaskPlan(task, {})
        if args.resume:
            root = Path(args.resume)
            rdir = root / task if multi else root
            if not multi and not (root / "config.json").exists() and not (root / "resume" / PENDING).exists() \
                    and (root / task).is_dir():
                rdir = root / task  # --task lm --resume ROOT of a two-task run
            if not rdir.exists():
                raise ckpt.CheckpointError(f"{rdir}: checkpoint directory not found (nothing to resume)")
            pending = rdir / "resume" / PENDING
            plan.pending = pending if not (rdir / "config.json").exists() and pending.is_file() else None
            if plan.pending is None and not (rdir / "config.json").exists():
                raise ckpt.CheckpointError(f"{rdir / 'config.json'}: file not found (not a checkpoint directory?); "
                                           "nothing to resume: if its first save never finished, start the run "
                                           f"again with --save {rdir}")
            plan.cfg = _resume_config(args, task, rdir, plan.pending)
            plan.resume_dir = rdir
            plan.cfg["normalize"] = bool(args.normalize or plan.cfg.get("normalize", False))
        else:
            plan.cfg = resolve_config(args, task)
            plan.cfg["normalize"] = bool(args.normalize)
            if task == "classify" and args.init_from_lm:
                # the classifier takes the LM's sizes, so its embedding and recurrent weights fit
                lm_cfg = ckpt.read_config(args.init_from_lm)
                if lm_cfg["task"] != "lm":
                    raise ckpt.CheckpointError(f"--init-from-lm {args.init_from_lm}: is a {lm_cfg['task']!r} "
                                               "checkpoint, not an LM")
                for key in ("embed_dim", "hidden_size", "num_layers", "cell"):
                    plan.cfg[key] = lm_cfg.get(key, "lstm")
                plan.cfg["init_from_lm"] = str(Path(args.init_from_lm).resolve())
        if task == "lm":
            own_text.configure(plan.cfg, args, resumed=plan.resume_dir is not None)
        if task == "lm" and (getattr(args, "corpus", None) or plan.cfg.get("corpus")):
            # --corpus NAME PATH: the LM trains on a whole corpus file, streamed (mlx_rnn/core/corpus.py)
            plan.cfg["corpus"] = ([args.corpus[0], str(Path(args.corpus[1]).resolve())] if args.corpus
                                  else plan.cfg["corpus"])
        if args.save:
            plan.save_dir = Path(args.save) / task if multi else Path(args.save)
        elif plan.resume_dir is not None:
            plan.save_dir = plan.resume_dir
        plans.append(plan)
    check_save_dirs(plans, args, multi, distributed.current().is_main)

    data_dir = resolve_data_dir(args.data_dir)
    needed = sorted({f for plan in plans for f in task_files(plan.task)
                     if not (plan.task == "lm" and (plan.cfg.get("corpus") or plan.cfg.get("train_text")))})
    if needed and not data_dir_complete(data_dir, needed):  # (--corpus or --train-text alone need no data directory)
        if not args.download:
            raise MissingData(data_dir, needed, data_dir_given_by(args.data_dir))
        download_data(data_dir, args.quiet)
    for plan in plans:
        t = time.perf_counter()
        cfg = plan.cfg
        if plan.task == "lm" and cfg.get("corpus"):
            plan.data = corpus_mod.lm_data(cfg["corpus"], Indexer(cfg["vocab"]))
            where = Path(cfg["corpus"][1])
        elif plan.task == "lm" and cfg.get("train_text"):
            plan.data = own_text.lm_data(cfg, plan.resume_dir is not None, cfg["val_fraction"])
            where = Path(cfg["train_text"])
        else:
            if cfg.get("vocab_kind") == "corpus" and plan.resume_dir is None:
                if cfg["normalize"]:
                    raise ValueError("--vocab corpus keeps every symbol of the text; it cannot be combined with --normalize")
                cfg["vocab"] = corpus_alphabet(data_dir / LM_FILES["train"])  # stored in config.json
                cfg["vocab_size"] = len(cfg["vocab"])
            plan.data = load_task_data(plan.task, data_dir, Indexer(cfg["vocab"]), cfg["val_fraction"], cfg["seed"],
                                       normalize=cfg["normalize"])
            where = data_dir / (CLASSIFY_FILES["train_consonant"] if plan.task == "classify" else LM_FILES["train"])
        check_trainable(cfg, plan.data["train"], where)
        if not (plan.task == "classify" and args.zero_shot_lm):
            check_fits(plan.task, cfg)  # before any model or optimizer state is allocated
        plan.read_time_s = time.perf_counter() - t
    for plan in plans:
        if plan.save_dir is not None and distributed.current().is_main:  # (only rank 0 writes)
            # every input checked: lock the directory for the run, clean up what a crash left
            prepare_save_dir(plan.save_dir, f"--save {args.save}" if args.save else f"--resume {args.resume}")
        if plan.resume_dir is not None and plan.pending is None:
            plan.resume = load_resume_state(plan.resume_dir, plan.task, plan.cfg, plan.data["train"], framework)
    return plans


def download_data(data_dir: Path, quiet: bool) -> None:
    """Build the data files in ``data_dir`` (``--download``), as ``scripts/prepare_data.py --out`` does."""
    print(f"{data_dir}: data not found; building it (--download), as scripts/prepare_data.py --out {data_dir} "
          "would", file=sys.stderr, flush=True)
    try:
        from mlx_rnn.tools.prepare import ChecksumError, prepare
    except ImportError:  # the preparation module is missing: run the script
        import subprocess

        script = Path(__file__).resolve().parent.parent / "scripts" / "prepare_data.py"
        rc = subprocess.call([sys.executable, str(script), "--out", str(data_dir)] + (["--quiet"] if quiet else []))
        if rc == 1:
            raise CheckFailed(f"{data_dir}: data preparation failed a checksum (see above)") from None
        if rc == 130:
            raise KeyboardInterrupt
        if rc != 0:
            raise DataError(data_dir, f"data preparation failed (scripts/prepare_data.py exit code {rc})") from None
        return
    try:
        prepare(data_dir, progress=not quiet)
    except ChecksumError as e:
        raise CheckFailed(str(e)) from None


def _save_pending(plans: list[TaskPlan], after: int, root: Path) -> None:
    """After an interrupt, record the configuration of the tasks not started, so that
    ``--resume ROOT`` can run them later exactly as this run would have."""
    for plan in plans[after + 1:]:
        d = plan.save_dir or root / plan.task
        if not (d / "config.json").exists():
            ckpt.atomic_write_json(d / "resume" / PENDING, plan.cfg)


def main(framework: str, argv=None) -> int:
    """Entry point of both trainers; returns the process exit code (DESIGN.md)."""
    t0 = time.perf_counter()
    parser = build_parser(framework)
    args = parser.parse_args(argv)
    try:
        dist = distributed.init_from_args(framework, args)  # --distributed: rank and world size
        plans = plan_run(framework, args)
        fw = backend.train_module(framework)
        device = fw.select_device(args.device)
        multi = len(plans) > 1
        root = Path(args.save) if args.save else Path(args.resume) if args.resume else \
            Path("checkpoints") / f"interrupted-{datetime.now():%Y%m%d-%H%M%S}"
        result = {}
        with StopFlag() as stop:
            for i, plan in enumerate(plans):
                task, cfg = plan.task, plan.cfg
                t_task = time.perf_counter()
                cfg["device"] = device
                distributed.print0(f"[{task}] {fw.FRAMEWORK} {fw.framework_version()} on {device}; "
                                   f"{fw.describe_backend()}" + (f"; data-parallel over {dist.world_size} ranks "
                                                                 f"({dist.backend})" if dist.enabled else ""))
                plot_path = None
                if args.plot:
                    plot_path = Path(args.plot)
                    if multi:
                        plot_path = plot_path.with_name(f"{plot_path.stem}-{task}{plot_path.suffix or '.png'}")
                if task == "classify" and args.zero_shot_lm:
                    result[task] = zero_shot_bundle(fw, args.zero_shot_lm, plan.data, device)
                    result[task]["total_time_s"] = time.perf_counter() - t_task + plan.read_time_s
                    _print_heldout(result[task], "zero-shot from the LM")
                    continue
                try:  # distributed: only rank 0 prints, shows progress and writes
                    bundle = train_task(fw, task, cfg, plan.data, plan.save_dir if dist.is_main else None, None,
                                        args.quiet or not dist.is_main, stop,
                                        log=_log if dist.is_main else lambda *a, **k: None,
                                        resume=plan.resume, interrupt_dir=root / task if multi else None,
                                        plot_path=plot_path if dist.is_main else None)
                except Interrupted as e:
                    if multi:
                        if dist.is_main:
                            _save_pending(plans, i, root)
                        # tasks finished without --save left nothing to resume: name the rest
                        rest = "" if all(p.save_dir is not None for p in plans[:i]) else \
                            "--task " + ("both " if len(plans) - i > 1 else f"{task} ")
                        raise Interrupted(f"{e}".rsplit("; resume with", 1)[0]
                                          + f"; resume with {rest}--resume {e.save_dir.parent}", task,
                                          e.save_dir) from None
                    raise
                if plan.pending is not None:
                    plan.pending.unlink(missing_ok=True)
                bundle["total_time_s"] = (time.perf_counter() - t0 if not multi
                                          else plan.read_time_s + time.perf_counter() - t_task)
                if dist.enabled:
                    bundle["distributed"] = {"world_size": dist.world_size, "backend": dist.backend,
                                             "global_batch_size": cfg["batch_size"] * dist.world_size}
                result[task] = bundle
                if task == "classify" and bundle.get("dev_windows_in_lm_train") and dist.is_main:
                    print(f"[classify] note: {bundle['dev_windows_in_lm_train']} of {bundle['total']} dev windows occur "
                          f"verbatim in text8-100k.txt and {bundle['dev_windows_in_classifier_train']} in the "
                          "classifier's training examples", flush=True)
                if task == "classify" and dist.is_main:
                    _print_heldout(bundle, "initialised from the LM" if cfg.get("init_from_lm") else "direct")
        if dist.is_main:
            print_result(result, args.output_json)
        if dist.enabled and framework == "torch":
            from torch_ref.parallel import shutdown

            shutdown()  # the process group torn down before interpreter exit (no abort at exit)
        return EXIT_OK
    except CheckFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except (DataError, ckpt.CheckpointError, ValueError, OSError) as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        for line in getattr(e, "details", ()):  # no data at all: what is missing, how to get it
            print(f"  {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except Interrupted as e:
        if distributed.current().is_main:  # (rank 0 saved the state; the others wrote nothing)
            print(f"{e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MemoryError, RuntimeError) as e:  # an allocation that failed despite the estimate
        if allocation_message(e):
            print(f"error: {allocation_message(e)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if not distributed.current().enabled:  # distributed: a peer died ("connection to a peer was lost")
            raise
        print(f"error: rank {distributed.current().rank}: {_one_line(e)}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    finally:
        unlock_all()  # the checkpoint directories' locks (the end of the process drops them too)


def zero_shot_bundle(fw, lm_path, data: dict, device: str) -> dict:
    """Classify by the LM alone (``--zero-shot-lm``): vowel when P(a, e, i, o, u next) >= 0.5.

    Returns the classification bundle on the dev examples, with ``"heldout"`` on windows
    of text8-dev.txt and the contamination counts; nothing is trained.
    """
    lm = backend.load(fw.FRAMEWORK, lm_path, "lm")
    texts, labels = data["dev"]
    out = classification_bundle(zero_shot_predict(lm, texts), labels)
    out.update(contamination(texts, data["train_texts"], data.get("lm_text")))
    if data.get("heldout") and data["heldout"][0]:
        out["heldout"] = classification_bundle(zero_shot_predict(lm, data["heldout"][0]), data["heldout"][1])
    out.update(framework=fw.FRAMEWORK, device=device, epochs=0, epoch_times_s=[], train_time_s=None,
               config={**lm.config, "task": "classify", "zero_shot_lm": str(Path(lm_path).resolve())})
    return out


def _print_heldout(bundle: dict, how: str) -> None:
    """The labelled dev and held-out accuracies, with the contamination note."""
    if not distributed.current().is_main:
        return
    line = f"[classify] {how}: dev accuracy {bundle['accuracy']:.2f}% (standard dev windows)"
    if "heldout" in bundle:
        h = bundle["heldout"]
        line += f"; held-out accuracy {h['accuracy']:.2f}% ({h['correct']}/{h['total']} windows of text8-dev.txt)"
    print(line, flush=True)
    if "heldout" in bundle and bundle.get("dev_windows_in_lm_train"):
        print(f"[classify] note: {heldout_note(bundle['dev_windows_in_lm_train'], bundle['total'])}", flush=True)


def _one_line(e: BaseException) -> str:
    """An exception as one line (OSError: 'path: reason')."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return " ".join(str(e).split("\n")).strip() or type(e).__name__


def main_mlx() -> int:
    """Console entry point ``mlx-rnn-train`` (same as ``python scripts/train_mlx.py``)."""
    return main("mlx")


def main_torch() -> int:
    """Console entry point ``mlx-rnn-train-torch`` (same as ``python scripts/train_torch.py``)."""
    return main("torch")


if __name__ == "__main__":  # python -m mlx_rnn.run.runner {mlx,torch} [flags] (used by scripts/seeds.py)
    if len(sys.argv) < 2 or sys.argv[1] not in ("mlx", "torch"):
        print("usage: python -m mlx_rnn.run.runner {mlx,torch} [trainer flags]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
