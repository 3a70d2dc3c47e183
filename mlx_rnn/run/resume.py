"""Saving and resuming a task's run: what each epoch and an interrupt write (the checkpoint,
``metrics.jsonl``, the resumable state), reading that state back and restoring a run from it, the
configuration a resumed run continues with (read and migrated by
:func:`mlx_rnn.core.checkpoint.read_config_json`), and the list of tasks still pending (written by
:func:`mlx_rnn.run.plan.save_pending`). The run these functions save and restore is
:class:`mlx_rnn.run.fit.TaskRun`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
import json
import math
from pathlib import Path

import numpy as np

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core import distributed
from mlx_rnn.core.config import RunConfig, validate_config
from mlx_rnn.core.batching import steps_per_epoch
from .errors import Interrupted
from .flags import RESUME_OVERRIDABLE

@dataclass
class ResumeState:
    """Resumable training state read from ``dir/resume`` and checked against the run's config."""

    dir: Path
    weights: dict
    tensors: dict
    state: dict
    best_weights: dict | None


def load_resume_state(resume_dir, task: str, cfg: RunConfig, train, framework: str) -> ResumeState:
    """Read and check everything a resumed run needs, before anything is trained or written.

    Raises:
        CheckpointError: missing, corrupt, truncated or mismatched state (one line).
        ValueError: ``cfg.epochs`` (--epochs) below the epochs the state has already trained.
    """
    resume_dir = Path(resume_dir)
    weights, tensors, state = ckpt.load_resume(resume_dir)
    steps = steps_per_epoch(cfg, train, distributed.current().world_size)
    ckpt.check_resume(resume_dir, cfg, weights, tensors, state, framework, steps)
    check_epochs_left(resume_dir, cfg, state["epoch"])
    best_weights = None
    if state["best_epoch"] >= 0:
        best_weights, best_cfg = ckpt.load_checkpoint(resume_dir, task)
        ckpt.check_weights(best_weights, cfg, resume_dir / "model.safetensors")
    return ResumeState(resume_dir, weights, tensors, state, best_weights)


def check_epochs_left(resume_dir, cfg: RunConfig, trained: int | None = None) -> None:
    """ValueError (one line) when ``cfg.epochs`` (--epochs) is below the ``trained`` epochs of
    the state in ``resume_dir`` (None: read from its ``resume/trainer_state.json``; an unreadable
    one is left to :func:`load_resume_state` to report). Called before the run writes anything."""
    if trained is None:
        try:
            trained = ckpt.read_json_object(Path(resume_dir) / "resume" / "trainer_state.json").get("epoch")
        except (OSError, ckpt.CheckpointError):
            return
        if not isinstance(trained, int) or isinstance(trained, bool):
            return
    if cfg.epochs < trained:
        raise ValueError(f"--epochs {cfg.epochs}: {resume_dir} has already trained {trained} epochs "
                         f"(--epochs N with N > {trained} trains more)")


def restore_training_state(trainer, resume: ResumeState) -> None:
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


def truncate_metrics(path: Path, last_epoch: int) -> None:
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


def read_pending(path: Path) -> dict:
    """The configuration of a task not started yet (its JSON object), migrated and checked like a
    checkpoint's."""
    cfg = ckpt.read_json_object(path)
    if cfg.get("task") not in ckpt.TASKS:
        raise ckpt.CheckpointError(f"{path}: not a task configuration")
    return ckpt.check_config(cfg, path)


def resume_config(args, task: str, resume_dir: Path, pending: Path | None) -> RunConfig:
    """The configuration of the run being resumed (read, migrated and checked by
    :mod:`mlx_rnn.core.checkpoint`), with the flags a resumed run may change.

    Raises:
        CheckpointError: a missing, bad or other task's configuration (naming the file).
        ValueError: a flag that differs from the run's setting, or a bad value of one it may change.
    """
    if pending is not None:
        cfg, where = read_pending(pending), pending
    else:
        cfg, where = ckpt.read_config_json(resume_dir), resume_dir / "config.json"
    if cfg["task"] != task:
        raise ckpt.CheckpointError(f"{resume_dir}: checkpoint is for task {cfg['task']!r}, not {task!r}")
    cfg.pop("calibration_temperature", None)  # fitted again at the end of the resumed run
    keys = set(RunConfig.flag_settings(task))
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
    validate_config(cfg)  # the file's settings passed already: only a changed flag can fail, named as one
    return RunConfig.from_json(cfg)


# ----- a task run's saves and its restore (the run: mlx_rnn.run.fit.TaskRun) -------------------------
def checkpoint_config(run) -> dict:
    """The ``config.json`` of the model ``run`` kept so far: the settings, the writer, ``best_epoch``."""
    return run.cfg.to_json(run.writer, best_epoch=run.best_epoch + 1)


def save_state(run, target: Path, epoch: int, step: int, loss: tuple[float, int] = (0.0, 0)) -> None:
    """Write ``run``'s resumable state under ``target/resume`` (stopped before ``step`` of ``epoch``;
    ``loss``: the train loss sum and step count of that epoch so far)."""
    fw = run.fw
    ckpt.save_resume(target, run.trainer.weights(), run.trainer.training_state(), {
        "epoch": epoch, "step": step, "global_step": run.trainer.global_step,
        "epoch_loss_sum": loss[0], "epoch_loss_steps": loss[1],
        "data_order_seed": run.cfg.seed, "data_sha256": run.fingerprint,
        "best_val_loss": run.best_loss if math.isfinite(run.best_loss) else None,
        "best_epoch": run.best_epoch, "bad_epochs": run.bad_epochs, "epoch_times_s": run.epoch_times,
        "framework": fw.FRAMEWORK, "framework_version": fw.framework_version(),
    })


def save_epoch(run, epoch: int, improved: bool, record: dict) -> None:
    """After ``epoch``: the checkpoint (when better), the metrics line and, every ``save_every``
    epochs, the resumable state, into ``run.save_dir``.

    The first save commits ``config.json`` last, after the resumable state, so a directory
    with a checkpoint can always be resumed (mlx_rnn.core.savedir).
    """
    save_dir = run.save_dir
    first = not (save_dir / "config.json").exists()
    if improved:
        ckpt.save_checkpoint(save_dir, run.best_weights, checkpoint_config(run), write_config=not first)
    ckpt.append_jsonl(save_dir / "metrics.jsonl", record)
    if first or (epoch + 1) % run.cfg.save_every == 0 or epoch + 1 == run.cfg.epochs:
        save_state(run, save_dir, epoch + 1, 0)
    if first and run.best_weights is not None:
        ckpt.save_checkpoint(save_dir, run.best_weights, checkpoint_config(run), write_weights=False)


def save_interrupted(run, epoch: int, res, cause: str = "") -> Interrupted:
    """Save resumable state after Ctrl-C or SIGTERM (``cause``) in ``epoch``, with the train loss
    of its steps so far (``res``, an :class:`~mlx_rnn.run.epoch.EpochResult`); returns the
    :class:`Interrupted` to raise."""
    target = run.save_dir
    if target is None:
        target = run.out.interrupt_dir or Path("checkpoints") / f"interrupted-{run.task}-{datetime.now():%Y%m%d-%H%M%S}"
    step = run.trainer.epoch_step
    if distributed.current().is_main:  # distributed: only rank 0 writes
        save_state(run, target, epoch, step, (res.loss_sum, res.loss_steps))  # (config.json last commits the pair)
        if target != run.save_dir and run.history:  # (a --save directory has them already)
            # the finished epochs' records, so that the resumed run's metrics.jsonl and --plot have them
            ckpt.atomic_write_bytes(target / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in run.history).encode())
        if target != run.save_dir or run.best_epoch < 0:
            # the directory needs a checkpoint (config.json + weights) to be resumable
            weights = run.best_weights if run.best_weights is not None else run.trainer.weights()
            ckpt.save_checkpoint(target, weights, checkpoint_config(run))
    by = f" by {cause}" if cause else ""
    return Interrupted(f"[{run.task}] interrupted{by} at epoch {epoch + 1}, step {step}; "
                       f"resume with --resume {target}", run.task, target)


def restore(run, resume: ResumeState) -> None:
    """Continue ``run`` where ``resume`` stopped: trainer state, model selection, epoch records
    (from ``metrics.jsonl``, for ``--plot``)."""
    state, log = resume.state, run.out.log
    restore_training_state(run.trainer, resume)
    run.first_epoch = run.epochs_run = state["epoch"]
    run.start_step = state["step"]
    if "epoch_loss_steps" in state:
        run.prior = (float(state["epoch_loss_sum"]), state["epoch_loss_steps"])
    elif run.start_step:  # written before the partial epoch's loss was kept
        log(f"[{run.task}] note: this resumable state does not hold the train loss of epoch "
            f"{run.first_epoch + 1}'s first {run.start_step} steps; its logged train loss covers the rest")
    run.best_loss, run.best_epoch = state["best_val_loss"], state["best_epoch"]
    run.bad_epochs, run.epoch_times = state["bad_epochs"], list(state["epoch_times_s"])
    run.best_weights = resume.best_weights
    if state.get("data_sha256", run.fingerprint) != run.fingerprint:
        log(f"[{run.task}] warning: the training data differ from those of the interrupted run; "
            "the resumed run will not match an uninterrupted one")
    metrics = run.save_dir / "metrics.jsonl" if run.save_dir is not None else None
    if metrics is not None and run.save_dir.resolve() == resume.dir.resolve():
        truncate_metrics(metrics, run.first_epoch)
    log(f"[{run.task}] resuming from {resume.dir}: epoch {run.first_epoch + 1}, step {run.start_step}")
    if metrics is not None and metrics.is_file():
        run.history = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
        for rec, elapsed in zip(run.history, np.cumsum(run.epoch_times)):
            rec.setdefault("elapsed_s", float(elapsed))
    if run.cfg.patience and run.bad_epochs >= run.cfg.patience:
        log(f"[{run.task}] already stopped early (no better validation loss for {run.bad_epochs} epochs)")
        run.last_epoch = run.first_epoch
    elif run.first_epoch >= run.last_epoch:
        log(f"[{run.task}] already trained for all {run.last_epoch} epochs: nothing left to train "
            f"(--epochs N with N > {run.last_epoch} trains more)")
