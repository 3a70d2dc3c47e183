"""Memory of a training run, estimated before anything is allocated (framework-neutral; numpy-free).

A model that cannot fit is refused with the figure and the limit (one line, exit 2) instead of
a segmentation fault (MLX) or a traceback (PyTorch); an allocation that still fails is turned
into one line by :func:`allocation_message`.

The estimate (float32 throughout):

- model: P parameters (from the checkpoint's shapes) x 4 bytes, plus the trainer's copies of
  them (the best weights kept for the checkpoint and the copy written when saving): x 3;
- optimizer state: the gradients and AdamW's two moments, 3 x 4 P bytes;
- activations of one training step, kept for the backward pass: per sequence position the
  embedding (E), per layer the gates (4H, or 3H for the GRU), h, c and tanh(c) (3H), and the
  output logits (V), for the forward pass and as much again for the backward pass;
- the data the run holds in memory, as the caller counts it: for ``--train-text`` the
  validation blocks and the dev text as strings (:func:`mlx_rnn.core.own_text.resident_bytes`;
  the encoded text itself stays on disk and is read per batch).

The limit is the memory the system says is available (``MemAvailable`` on Linux, the physical
memory elsewhere), or the address-space limit (``ulimit -v``) when that is lower.
"""

from __future__ import annotations

import math
import os
import resource

from .checkpoint import expected_shapes
from .config import RunConfig

GB = 1e9


def estimate_bytes(cfg: RunConfig, data_bytes: int = 0) -> dict:
    """``{"model", "optimizer", "activations", "data", "total"}`` in bytes for a training run of
    ``cfg`` whose data take ``data_bytes``."""
    params = sum(math.prod(s) for s in expected_shapes(cfg).values())
    gates = 4 if cfg.cell == "lstm" else 3
    per_position = (cfg.embed_dim + cfg.num_layers * (gates + 3) * cfg.hidden_size
                    + (1 if cfg.task == "classify" else cfg.vocab_size))
    positions = cfg.batch_size * cfg.seq_len
    out = {"model": 3 * 4 * params, "optimizer": 3 * 4 * params, "activations": 2 * 4 * positions * per_position,
           "data": int(data_bytes)}
    out["total"] = sum(out.values())
    return out


def available_bytes() -> tuple[int | None, str]:
    """(bytes this process may still allocate, where the figure comes from); None when unknown."""
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "available memory (MemAvailable)"))
    except (OSError, ValueError):
        try:
            found.append((os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory"))
        except (OSError, ValueError, AttributeError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
        found.append((soft, "address-space limit (ulimit -v)"))
    return min(found) if found else (None, "")


def check_fits(task: str, cfg: RunConfig, data_bytes: int = 0, data_what: str = "data") -> None:
    """ValueError (one line) when the estimate of :func:`estimate_bytes` exceeds what is available.

    ``data_bytes``: the memory the data take (``data_what`` names them in the message).
    """
    est = estimate_bytes(cfg, data_bytes)
    limit, source = available_bytes()
    if limit is None or est["total"] <= limit:
        return
    parts = (f"model {est['model'] / GB:,.1f} GB, optimizer state {est['optimizer'] / GB:,.1f} GB, "
             f"activations {est['activations'] / GB:,.1f} GB" + (f", {data_what} {est['data'] / GB:,.1f} GB"
                                                                 if data_bytes else ""))
    hint = ("use a smaller --hidden-size, --embed-dim, --num-layers, --batch-size or --seq-len"
            if est["data"] < est["total"] / 2 else "use a shorter text (or a smaller --val-fraction)")
    raise ValueError(f"[{task}] not enough memory: training needs about {est['total'] / GB:,.1f} GB ({parts}) "
                     f"but the {source} is {limit / GB:,.1f} GB; {hint}")


_ALLOC_WORDS = ("out of memory", "not enough memory", "tried to allocate", "can't allocate", "cannot allocate", "unable to allocate", "failed to allocate",
                "bad_alloc", "malloc")


def allocation_message(e: BaseException) -> str | None:
    """One line for a failed allocation (MemoryError, or a framework's RuntimeError saying so); else None."""
    text = " ".join(str(e).split())
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(w in text.lower() for w in _ALLOC_WORDS)):
        first = text.split(". ")[0][:200] or type(e).__name__
        return f"out of memory: {first} (try a smaller model or batch)"
    return None
