"""Helper process for tests/test_distributed.py (not a test module itself).

Trains the classifier and the LM for a fixed number of steps on synthetic data through
the frameworks' ``Trainer`` (dropout off, fixed seed), single-process or under a
launcher (``--distributed``: ``mlx.launch``/``torchrun``), and has rank 0 write the
final weights to ``OUT/<framework>-<task>-w<world>.npz``.

    python tests/dist_worker.py mlx OUT --batch-size 8              # one process, batch 8
    mlx.launch -n 2 -- python tests/dist_worker.py mlx OUT --batch-size 4 --distributed
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.core import distributed  # noqa: E402
from mlx_rnn.core.config import RunConfig, make_config  # noqa: E402


STEPS = 10


def config(task: str, batch: int, seq_len: int, epochs: int) -> RunConfig:
    return make_config(task, embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0, lr=1e-2, clip_norm=1.0,
                       batch_size=batch, epochs=epochs, seed=0, seq_len=20 if task == "classify" else seq_len)


def data(task: str, global_batch: int, seq_len: int):
    """Synthetic data giving exactly STEPS steps per epoch at ``global_batch``; the classifier's
    last batch is 3 short (so the weighted reduction of unequal shards is exercised)."""
    rng = np.random.default_rng(1234)
    if task == "classify":
        n = STEPS * global_batch - 3
        return (rng.integers(0, 27, size=(n, 20)).astype(np.int32), rng.integers(0, 2, size=n).astype(np.int32))
    n = global_batch * ((STEPS + 1) * seq_len + 1)
    return rng.integers(0, 27, size=n).astype(np.int32)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("framework", choices=("mlx", "torch"))
    p.add_argument("out")
    p.add_argument("--batch-size", type=int, required=True, help="per rank")
    p.add_argument("--seq-len", type=int, default=12)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--tasks", default="classify,lm")
    p.add_argument("--distributed", action="store_true")
    p.add_argument("--dist-timeout", type=float, default=None)
    args = p.parse_args()
    if args.framework == "mlx":
        from mlx_rnn import train as fw
    else:
        from torch_ref import train as fw
    dist = distributed.init(args.framework, args.distributed, "cpu", args.dist_timeout)
    fw.select_device("cpu")
    out = Path(args.out)
    for task in args.tasks.split(","):
        cfg = config(task, args.batch_size, args.seq_len, args.epochs)
        train = data(task, args.batch_size * dist.world_size, args.seq_len)
        trainer = fw.Trainer(cfg, train)
        assert trainer.steps_per_epoch == STEPS, trainer.steps_per_epoch
        losses = []
        for epoch in range(args.epochs):
            res = trainer.train_epoch(epoch)
            losses.append(res.mean_loss)
        if dist.is_main:
            np.savez(out / f"{args.framework}-{task}-w{dist.world_size}.npz", **trainer.weights())
            (out / f"{args.framework}-{task}-w{dist.world_size}.json").write_text(
                json.dumps({"losses": losses, "steps": trainer.global_step}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
