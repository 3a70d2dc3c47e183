"""torch_ref: the PyTorch twin of mlx_rnn (same classes, names and API).

It imports the framework-neutral core (vocab, data, batching, metrics,
checkpoints) from ``mlx_rnn`` instead of copying it.
"""


def load(path, task=None, device=None):
    """Load a checkpoint directory into its PyTorch wrapper (see :func:`torch_ref.models.load`)."""
    from .models import load as _load

    return _load(path, task, device)
