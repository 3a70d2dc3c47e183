"""Checkpoint directories shared by both frameworks (docs/design.md, "Checkpoint").

Layout of a checkpoint directory::

    model.safetensors          float32 weights, PyTorch parameter names
    config.json                format_version, task, vocabulary, sizes, training settings, writer
    metrics.jsonl              one JSON object per finished epoch (appended)
    resume/optimizer.safetensors
    resume/trainer_state.json  epoch, step, RNG state, data-order seed, best metric

Framework-neutral: weights travel as numpy arrays through ``safetensors.numpy``;
no pickle anywhere. Every file is written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .config import RunConfig, is_finite_number, is_integer, validate_config

FORMAT_VERSION = 1
TASKS = ("classify", "lm")
CELL_GATES = {"lstm": 4, "gru": 3}


class CheckpointError(ValueError):
    """A missing, corrupt, truncated or mismatched checkpoint. ``str()`` is one line."""


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; CheckpointError (one line naming the file) when it is not one."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt JSON ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return obj


def atomic_write_bytes(path, data: bytes, follow_links: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, fsync, rename.
    A symbolic link at ``path`` is replaced, or with ``follow_links`` (a file the user named:
    ``--output-json``) written through: its target replaced, the link kept."""
    path = Path(os.path.realpath(path)) if follow_links else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # e.g. a full disk: name the file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path, obj, follow_links: bool = False) -> None:
    """Write ``obj`` as indented JSON, atomically (``follow_links``: :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode(), follow_links)


def append_jsonl(path, obj) -> None:
    """Append one JSON line to ``path`` (flushed and fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(obj) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def save_tensors(path, tensors: dict, metadata: dict | None = None) -> None:
    """Save a dict of numpy arrays as safetensors, atomically."""
    from safetensors.numpy import save

    data = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    atomic_write_bytes(path, save(data, metadata=metadata))


def load_tensors(path) -> dict:
    """Load a safetensors file into numpy arrays; CheckpointError when missing or corrupt."""
    from safetensors.numpy import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    try:
        return load(path.read_bytes())
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({e})") from None


def expected_shapes(config: RunConfig) -> dict:
    """Parameter names and shapes a model built from ``config`` must have."""
    v, e, h, n = config.vocab_size, config.embed_dim, config.hidden_size, config.num_layers
    cell = config.cell  # the recurrent module is named after its cell: lstm.* or gru.*
    gates = CELL_GATES[cell]
    shapes = {"embedding.weight": (v, e)}
    for k in range(n):
        inp = e if k == 0 else h
        shapes[f"{cell}.weight_ih_l{k}"] = (gates * h, inp)
        shapes[f"{cell}.weight_hh_l{k}"] = (gates * h, h)
        shapes[f"{cell}.bias_ih_l{k}"] = (gates * h,)
        shapes[f"{cell}.bias_hh_l{k}"] = (gates * h,)
    out = 1 if config.task == "classify" else v
    shapes["output.weight"] = (out, h)
    shapes["output.bias"] = (out,)
    return shapes


def save_checkpoint(path, weights: dict, config: dict, *, write_weights: bool = True,
                    write_config: bool = True) -> None:
    """Write ``model.safetensors`` (float32) and then ``config.json`` into directory ``path``
    (``write_weights`` / ``write_config`` False: only the other one, e.g. to commit the pair later).

    ``config``: what config.json holds, ``RunConfig.to_json(writer, best_epoch)``; ``format_version``
    is added last."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = dict(config, format_version=FORMAT_VERSION)
    if write_weights:
        save_tensors(path / "model.safetensors",
                     {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()},
                     metadata={"format_version": str(FORMAT_VERSION), "task": config["task"]})
    if write_config:
        atomic_write_json(path / "config.json", config)


def migrate_config(config: dict) -> dict:
    """Fill, in place, the settings added after ``format_version`` 1 with the values a checkpoint
    written before them was trained with; returns ``config``."""
    config.setdefault("cell", "lstm")  # before the GRU
    config.setdefault("weight_drop", 0.0)
    config.setdefault("input_dropout", config.get("dropout"))  # older runs dropped the embedding at --dropout
    if config.get("task") == "lm":
        config.setdefault("calibrate", False)
    if config.get("task") == "classify":
        config.setdefault("prefix_weight", 0.0)
    return config


def check_config(config: dict, where) -> dict:
    """Migrate (:func:`migrate_config`) and validate a task configuration read from file ``where``.

    Raises:
        CheckpointError: a setting out of range or of the wrong type, naming ``where`` and the key.
    """
    migrate_config(config)
    try:
        validate_config(config, where)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    return config


def read_config(path) -> RunConfig:
    """The RunConfig in ``config.json`` of checkpoint ``path``; CheckpointError as :func:`read_config_json`."""
    return RunConfig.from_json(read_config_json(path))


def read_config_json(path) -> dict:
    """Read, migrate and validate ``config.json`` of checkpoint directory ``path``: the file's
    object, the writer's keys (framework, version, best epoch, format) included.

    Every reader of a checkpoint (load, evaluate, sample, resume) goes through here, so each
    gets the settings of older checkpoints filled in (:func:`migrate_config`).

    Raises:
        CheckpointError: missing directory/file, invalid JSON, unknown format or task, a bad
            setting (core.config.validate_config).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        tasks = [t for t in TASKS if (path / t / "config.json").is_file()]
        if tasks:  # the root of a --task both run
            raise CheckpointError(f"{path}: holds a two-task run; give one task's checkpoint: "
                                  + " or ".join(str(path / t) for t in tasks))
        raise CheckpointError(f"{cfg_path}: file not found (not a checkpoint directory?)")
    config = read_json_object(cfg_path)
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: unsupported format_version "
                              f"{config.get('format_version')!r} (this version reads {FORMAT_VERSION})")
    for key in ("task", "vocab", "vocab_size", "embed_dim", "hidden_size", "num_layers"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: missing key {key!r}")
    if config["task"] not in TASKS:
        raise CheckpointError(f"{cfg_path}: unknown task {config['task']!r}")
    return check_config(config, cfg_path)


def check_weights(weights: dict, config: RunConfig, where) -> None:
    """Raise CheckpointError unless ``weights`` has exactly the finite float32 tensors ``config`` implies."""
    want = expected_shapes(config)
    missing = sorted(set(want) - set(weights))
    extra = sorted(set(weights) - set(want))
    if missing or extra:
        raise CheckpointError(f"{where}: does not match config.json "
                              f"(missing {missing or 'none'}, unexpected {extra or 'none'})")
    for name, shape in want.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise CheckpointError(f"{where}: {name} has shape "
                                  f"{tuple(weights[name].shape)}, config.json implies {tuple(shape)}")
        if weights[name].dtype != np.float32:
            raise CheckpointError(f"{where}: {name} is {weights[name].dtype}, expected float32")
        if not np.all(np.isfinite(weights[name])):
            raise CheckpointError(f"{where}: {name} holds NaN or inf values (a diverged or corrupt model)")


def load_checkpoint(path, task: str | None = None) -> tuple[dict, RunConfig]:
    """Load ``(weights, config)`` from checkpoint directory ``path``, checking every shape.

    Args:
        task: when given, the checkpoint must be of this task.

    Raises:
        CheckpointError: corrupt/truncated files, wrong task, missing, mis-shaped or non-finite
            tensors.
    """
    config = read_config(path)
    if task is not None and config.task != task:
        raise CheckpointError(f"{path}: checkpoint is for task {config.task!r}, not {task!r}")
    weights = load_tensors(Path(path) / "model.safetensors")
    check_weights(weights, config, f"{path}/model.safetensors")
    return weights, config


def save_resume(path, weights: dict, optimizer_state: dict, trainer_state: dict) -> None:
    """Write the resumable training state under ``path/resume``.

    ``model.safetensors`` holds the *current* weights (the checkpoint beside it holds the
    best ones), ``optimizer.safetensors`` the optimizer moments and RNG state,
    ``trainer_state.json`` epoch, step, data-order seed and best metric, plus the sha256
    of the two tensor files. The JSON is written last, so a resume directory without it
    is incomplete and is not used, and one whose tensor files do not match the recorded
    hashes (a crash between the renames) is refused rather than resumed wrongly.
    """
    from safetensors.numpy import save

    rdir = Path(path) / "resume"
    model_bytes = save({k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})
    opt_bytes = save({k: np.ascontiguousarray(v) for k, v in optimizer_state.items()})
    trainer_state = dict(trainer_state, files={
        "model.safetensors": hashlib.sha256(model_bytes).hexdigest(),
        "optimizer.safetensors": hashlib.sha256(opt_bytes).hexdigest()})
    # staged, then moved: a run killed half-way leaves either the previous state or a committed
    # resume/.staged (trainer_state.json written last) that mlx_rnn.core.savedir.recover finishes
    staged = rdir / ".staged"
    atomic_write_bytes(staged / "model.safetensors", model_bytes)
    atomic_write_bytes(staged / "optimizer.safetensors", opt_bytes)
    atomic_write_json(staged / "trainer_state.json", trainer_state)
    for name in ("model.safetensors", "optimizer.safetensors", "trainer_state.json"):
        os.replace(staged / name, rdir / name)
    staged.rmdir()


#: trainer_state.json keys and the checks their values must pass.
_STATE_KEYS = {
    "epoch": lambda v: is_integer(v) and v >= 0,
    "step": lambda v: is_integer(v) and v >= 0,
    "global_step": lambda v: is_integer(v) and v >= 0,
    "best_val_loss": lambda v: v is None or isinstance(v, (int, float)) and not isinstance(v, bool),
    "best_epoch": lambda v: is_integer(v) and v >= -1,
    "bad_epochs": lambda v: is_integer(v) and v >= 0,
    "epoch_times_s": lambda v: isinstance(v, list) and all(is_finite_number(t) for t in v),
    "framework": lambda v: isinstance(v, str),
}
#: keys that older trainer_state.json files lack: the train loss sum and step count of the
#: interrupted epoch so far (without them a resumed epoch's train loss covers only its rest)
_STATE_KEYS_OPTIONAL = {
    "epoch_loss_sum": is_finite_number,
    "epoch_loss_steps": lambda v: is_integer(v) and v >= 0,
}


def load_resume(path) -> tuple[dict, dict, dict]:
    """Read ``(weights, optimizer_state, trainer_state)`` from ``path/resume``.

    Checks that ``trainer_state.json`` is complete and that the tensor files are the
    ones it was written with; :func:`check_resume` checks them against a config.

    Raises:
        CheckpointError: when absent, incomplete, corrupt or inconsistent.
    """
    rdir = Path(path) / "resume"
    state_path = rdir / "trainer_state.json"
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: file not found (nothing to resume)")
    state = read_json_object(state_path)
    for key, ok in _STATE_KEYS.items():
        if key not in state:
            raise CheckpointError(f"{state_path}: missing key {key!r}")
        if not ok(state[key]):
            raise CheckpointError(f"{state_path}: bad value for {key!r}: {state[key]!r:.60}")
    for key, ok in _STATE_KEYS_OPTIONAL.items():
        if key in state and not ok(state[key]):
            raise CheckpointError(f"{state_path}: bad value for {key!r}: {state[key]!r:.60}")
    if ("epoch_loss_sum" in state) != ("epoch_loss_steps" in state):
        raise CheckpointError(f"{state_path}: has one of 'epoch_loss_sum' and 'epoch_loss_steps' without the other")
    if state.get("epoch_loss_steps", 0) > state["step"]:
        raise CheckpointError(f"{state_path}: 'epoch_loss_steps' {state['epoch_loss_steps']} exceeds "
                              f"'step' {state['step']}")
    if state["best_val_loss"] is None:
        state["best_val_loss"] = math.inf
    files = state.get("files") or {}
    tensors = []
    for name in ("model.safetensors", "optimizer.safetensors"):
        fpath = rdir / name
        tensors.append(load_tensors(fpath))
        want = files.get(name)
        if want is not None and hashlib.sha256(fpath.read_bytes()).hexdigest() != want:
            raise CheckpointError(f"{fpath}: does not match {state_path.name} (written by another save; "
                                  "the resume state is inconsistent)")
    return tensors[0], tensors[1], state


def check_resume(path, config: RunConfig, weights: dict, tensors: dict, state: dict, framework: str,
                 steps_per_epoch: int) -> None:
    """Check resumable state read by :func:`load_resume` against the run it is to continue.

    ``tensors`` must be what the ``framework`` trainer's ``training_state()`` writes:
    ``optimizer.<param>.<field>`` moments shaped like their parameter, scalar
    ``optimizer.<field>`` entries, ``rng.*`` generator state and, for the LM, the
    carried ``carry.h``/``carry.c`` of shape (num_layers, batch_size, hidden_size).

    Raises:
        CheckpointError: naming the file and what does not fit.
    """
    rdir = Path(path) / "resume"
    if state["framework"] != framework:
        other = "train_mlx.py" if state["framework"] == "mlx" else "train_torch.py"
        raise CheckpointError(f"{rdir / 'trainer_state.json'}: resumable state was written by "
                              f"{state['framework']!r}, not {framework!r}; resume it with {other}")
    check_weights(weights, config, rdir / "model.safetensors")
    shapes = expected_shapes(config)
    where = rdir / "optimizer.safetensors"
    fields: dict[str, set] = {}
    rng = False
    for key, val in tensors.items():
        kind, _, rest = key.partition(".")
        if kind == "optimizer":
            pname, _, field = rest.rpartition(".")
            if pname in shapes:
                fields.setdefault(pname, set()).add(field)
                if field != "step" and tuple(val.shape) != tuple(shapes[pname]):
                    raise CheckpointError(f"{where}: {key} has shape {tuple(val.shape)}, "
                                          f"expected {tuple(shapes[pname])}")
            elif pname or val.size != 1:
                raise CheckpointError(f"{where}: unexpected tensor {key} (not a parameter of this model)")
        elif kind == "rng":
            rng = True
        elif kind == "carry":
            want = (config.num_layers, config.batch_size, config.hidden_size)
            if config.task != "lm" or tuple(val.shape) != want:
                raise CheckpointError(f"{where}: {key} has shape {tuple(val.shape)}, expected {want}")
        else:
            raise CheckpointError(f"{where}: unexpected tensor {key}")
    if not rng:
        raise CheckpointError(f"{where}: incomplete, no random generator state")
    if not fields and state["global_step"] > 0:
        raise CheckpointError(f"{where}: incomplete, no optimizer state")
    every = set().union(*fields.values()) if fields else set()
    for pname in shapes:  # every parameter has the same fields (Adam: two moments, maybe a step)
        lacking = sorted(every - fields.get(pname, set()))
        if lacking:
            raise CheckpointError(f"{where}: incomplete, no optimizer.{pname}.{lacking[0]}")
    if state["step"] >= max(steps_per_epoch, 1):
        raise CheckpointError(f"{rdir / 'trainer_state.json'}: stopped at step {state['step']} of an epoch, "
                              f"but the data gives {steps_per_epoch} steps per epoch (did the data or "
                              "batch size change?)")
