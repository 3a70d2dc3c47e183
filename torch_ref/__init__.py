"""torch_ref: the PyTorch twin of mlx_rnn (same classes, names and API).

It imports the framework-neutral core (``mlx_rnn.core``: vocab, data, batching, metrics,
checkpoints) and the epoch loop (``mlx_rnn.run.fit``) instead of copying them, and never mlx.
"""


def load(path, task=None, device=None):
    """Load a checkpoint directory into its PyTorch wrapper (see :func:`torch_ref.models.load`)."""
    from .models import load as _load

    return _load(path, task, device)
