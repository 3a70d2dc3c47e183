"""Checkpoint directories shared by both frameworks (DESIGN.md, "Checkpoint").

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

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
TASKS = ("classify", "lm")


class CheckpointError(ValueError):
    """A missing, corrupt, truncated or mismatched checkpoint. ``str()`` is one line."""


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same directory, fsync, rename."""
    path = Path(path)
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def append_jsonl(path, obj) -> None:
    """Append one JSON line to ``path`` (flushed and fsynced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()
        os.fsync(f.fileno())


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


def expected_shapes(config: dict) -> dict:
    """Parameter names and shapes a model built from ``config`` must have."""
    v, e, h, n = (config["vocab_size"], config["embed_dim"], config["hidden_size"],
                  config["num_layers"])
    gates = {"lstm": 4, "gru": 3}[config.get("cell", "lstm")]
    shapes = {"embedding.weight": (v, e)}
    for k in range(n):
        inp = e if k == 0 else h
        shapes[f"lstm.weight_ih_l{k}"] = (gates * h, inp)
        shapes[f"lstm.weight_hh_l{k}"] = (gates * h, h)
        shapes[f"lstm.bias_ih_l{k}"] = (gates * h,)
        shapes[f"lstm.bias_hh_l{k}"] = (gates * h,)
    out = 1 if config["task"] == "classify" else v
    shapes["output.weight"] = (out, h)
    shapes["output.bias"] = (out,)
    return shapes


def save_checkpoint(path, weights: dict, config: dict) -> None:
    """Write ``model.safetensors`` (float32) and ``config.json`` into directory ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = dict(config, format_version=FORMAT_VERSION)
    save_tensors(path / "model.safetensors",
                 {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()},
                 metadata={"format_version": str(FORMAT_VERSION), "task": config["task"]})
    atomic_write_json(path / "config.json", config)


def read_config(path) -> dict:
    """Read and validate ``config.json`` of checkpoint directory ``path``.

    Raises:
        CheckpointError: missing directory/file, invalid JSON, unknown format or task.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: file not found (not a checkpoint directory?)")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: corrupt JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: unsupported format_version "
                              f"{config.get('format_version')!r} (this version reads {FORMAT_VERSION})")
    for key in ("task", "vocab", "vocab_size", "embed_dim", "hidden_size", "num_layers"):
        if key not in config:
            raise CheckpointError(f"{cfg_path}: missing key {key!r}")
    if config["task"] not in TASKS:
        raise CheckpointError(f"{cfg_path}: unknown task {config['task']!r}")
    if len(config["vocab"]) != config["vocab_size"]:
        raise CheckpointError(f"{cfg_path}: vocab has {len(config['vocab'])} symbols "
                              f"but vocab_size is {config['vocab_size']}")
    return config


def load_checkpoint(path, task: str | None = None) -> tuple[dict, dict]:
    """Load ``(weights, config)`` from checkpoint directory ``path``, checking every shape.

    Args:
        task: when given, the checkpoint must be of this task.

    Raises:
        CheckpointError: corrupt/truncated files, wrong task, missing or mis-shaped tensors.
    """
    config = read_config(path)
    if task is not None and config["task"] != task:
        raise CheckpointError(f"{path}: checkpoint is for task {config['task']!r}, not {task!r}")
    weights = load_tensors(Path(path) / "model.safetensors")
    want = expected_shapes(config)
    missing = sorted(set(want) - set(weights))
    extra = sorted(set(weights) - set(want))
    if missing or extra:
        raise CheckpointError(f"{path}/model.safetensors: does not match config.json "
                              f"(missing {missing or 'none'}, unexpected {extra or 'none'})")
    for name, shape in want.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise CheckpointError(f"{path}/model.safetensors: {name} has shape "
                                  f"{tuple(weights[name].shape)}, config.json implies {tuple(shape)}")
        if weights[name].dtype != np.float32:
            raise CheckpointError(f"{path}/model.safetensors: {name} is {weights[name].dtype}, expected float32")
    return weights, config


def save_resume(path, weights: dict, optimizer_state: dict, trainer_state: dict) -> None:
    """Write the resumable training state under ``path/resume``.

    ``model.safetensors`` holds the *current* weights (the checkpoint beside it holds the
    best ones), ``optimizer.safetensors`` the optimizer moments and RNG state,
    ``trainer_state.json`` epoch, step, data-order seed and best metric. The JSON is
    written last, so a resume directory without it is incomplete and is not used.
    """
    rdir = Path(path) / "resume"
    save_tensors(rdir / "model.safetensors",
                 {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()})
    save_tensors(rdir / "optimizer.safetensors", optimizer_state)
    atomic_write_json(rdir / "trainer_state.json", trainer_state)


def load_resume(path) -> tuple[dict, dict, dict]:
    """Read ``(weights, optimizer_state, trainer_state)`` from ``path/resume``.

    Raises:
        CheckpointError: when absent or corrupt.
    """
    rdir = Path(path) / "resume"
    state_path = rdir / "trainer_state.json"
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: file not found (nothing to resume)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{state_path}: corrupt JSON ({e})") from None
    return load_tensors(rdir / "model.safetensors"), load_tensors(rdir / "optimizer.safetensors"), state
