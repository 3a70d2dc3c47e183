"""Resuming: the saved training state, restoring it, the checkpoint configuration a resumed run
continues with (read and migrated by :func:`mlx_rnn.core.checkpoint.read_config`), and the list
of tasks still pending (written by :func:`mlx_rnn.run.plan.save_pending`).
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from pathlib import Path

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.config import RESUME_OVERRIDABLE, TASK_DEFAULTS, COMMON_DEFAULTS, validate_config
from mlx_rnn.core.taskdata import steps_per_epoch

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
    """The configuration of a task not started yet, migrated and checked like a checkpoint's."""
    cfg = ckpt.read_json_object(path)
    if cfg.get("task") not in ckpt.TASKS:
        raise ckpt.CheckpointError(f"{path}: not a task configuration")
    return ckpt.check_config(cfg, path)


def resume_config(args, task: str, resume_dir: Path, pending: Path | None) -> dict:
    """The configuration of the run being resumed (read, migrated and checked by
    :mod:`mlx_rnn.core.checkpoint`), with the flags a resumed run may change.

    Raises:
        CheckpointError: a missing, bad or other task's configuration (naming the file).
        ValueError: a flag that differs from the run's setting, or a bad value of one it may change.
    """
    if pending is not None:
        cfg, where = read_pending(pending), pending
    else:
        cfg, where = ckpt.read_config(resume_dir), resume_dir / "config.json"
    if cfg["task"] != task:
        raise ckpt.CheckpointError(f"{resume_dir}: checkpoint is for task {cfg['task']!r}, not {task!r}")
    cfg.pop("calibration_temperature", None)  # fitted again at the end of the resumed run
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
    validate_config(cfg)  # the file's settings passed already: only a changed flag can fail, named as one
    return cfg
