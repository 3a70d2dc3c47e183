"""Helpers for the robustness tests: small generated data directories, fake checkpoints,
running the real scripts as subprocesses, and fingerprints of directories.

Nothing here needs the real text8 data, MLX or PyTorch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.config import make_config
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES
from mlx_rnn.core.vocab import VOWELS

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {name: ROOT / "scripts" / f"{name}.py"
           for name in ("train_mlx", "train_torch", "evaluate", "sample", "seeds", "gpu_check")}
TRAINERS = ("train_mlx", "train_torch")
FRAMEWORK = {"train_mlx": "mlx", "train_torch": "torch"}
#: flags that make any training run tiny and quick
TINY = ["--hidden-size", "16", "--embed-dim", "8", "--batch-size", "8", "--seq-len", "10", "--quiet",
        "--device", "cpu"]

_WORDS = ("the of and one in a to zero nine two is as eight for s five three was by that four six "
          "seven with on are it from or his an be this which at he also not have were has but first "
          "new their after other all time they some more most into only over states").split()


def make_text(n: int, seed: int = 0) -> str:
    """``n`` characters of word-like text over a-z and space."""
    rng = np.random.default_rng(seed)
    out, size = [], 0
    while size < n + 1:
        w = _WORDS[rng.integers(len(_WORDS))]
        out.append(w)
        size += len(w) + 1
    return " ".join(out)[:n]


def make_data_dir(path: Path, per_class: int = 60, dev_per_class: int = 20, lm_chars: int = 2500,
                  dev_chars: int = 300, seed: int = 0) -> Path:
    """Write the six data files, generated, into ``path`` (created); returns ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    text = make_text(max(lm_chars, 30 * (per_class + dev_per_class) * 2), seed)
    cons, vows = [], []
    for i in range(0, len(text) - 21, 3):
        nxt = text[i + 20]
        if nxt == " ":
            continue
        (vows if nxt in VOWELS else cons).append(text[i:i + 20])
    assert len(cons) >= per_class + dev_per_class and len(vows) >= per_class + dev_per_class
    files = {
        CLASSIFY_FILES["train_consonant"]: cons[:per_class],
        CLASSIFY_FILES["train_vowel"]: vows[:per_class],
        CLASSIFY_FILES["dev_consonant"]: cons[per_class:per_class + dev_per_class],
        CLASSIFY_FILES["dev_vowel"]: vows[per_class:per_class + dev_per_class],
    }
    for name, lines in files.items():
        (path / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (path / LM_FILES["train"]).write_text(text[:lm_chars], encoding="utf-8")
    (path / LM_FILES["dev"]).write_text(make_text(dev_chars, seed + 1), encoding="utf-8")
    return path


def fake_checkpoint(path: Path, task: str, hidden_size: int = 16, embed_dim: int = 8, seed: int = 0) -> Path:
    """A valid checkpoint directory with random weights (no framework needed)."""
    cfg = make_config(task, hidden_size=hidden_size, embed_dim=embed_dim, device="cpu")
    rng = np.random.default_rng(seed)
    weights = {k: (0.1 * rng.standard_normal(shape)).astype(np.float32)
               for k, shape in ckpt.expected_shapes(cfg).items()}
    ckpt.save_checkpoint(path, weights, cfg.to_json({"framework": "numpy", "framework_version": np.__version__},
                                                    best_epoch=1))
    return Path(path)


def script_env() -> dict:
    """The environment for the scripts: no MLX_RNN_DATA, and one compute thread (the tests
    run tiny models on shared cores, where spinning thread pools only slow them down)."""
    env = dict(os.environ)
    env.pop("MLX_RNN_DATA", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_script(name: str, *args, cwd: Path | None = None, env: dict | None = None, timeout: float = 600,
               ) -> subprocess.CompletedProcess:
    """Run ``scripts/<name>.py`` with ``args``; returns the completed process (text output)."""
    full_env = script_env()
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(SCRIPTS[name]), *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failing script printed on stderr (asserting it is one line, no traceback)."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    return lines[0]


def fingerprint(path: Path) -> dict:
    """``{relative path: (sha256, mtime_ns)}`` of every file under ``path``."""
    out = {}
    for p in sorted(Path(path).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out
