"""Learning-rate schedule shared by both trainers (framework-neutral).

Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then either constant or a
cosine decay to ``lr * min_lr_ratio`` at ``total_steps`` (Loshchilov & Hutter,
"SGDR", 2017). A pure function of the step, so MLX and PyTorch use identical rates.
"""

from __future__ import annotations

import math


def lr_at(step: int, lr: float, total_steps: int, warmup_steps: int = 0,
          schedule: str = "constant", min_lr_ratio: float = 0.1) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Raises:
        ValueError: unknown ``schedule``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        span = max(total_steps - warmup_steps, 1)
        t = min(max(step - warmup_steps, 0) / span, 1.0)
        return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (constant or cosine)")
