"""mlx-rnn: character-level recurrent networks written natively for MLX.

``mlx_rnn.load(path)`` returns the trained wrapper (``RNNClassifier`` or
``RNNLanguageModel``) stored in a checkpoint directory. The framework-neutral
packages ``mlx_rnn.core`` and ``mlx_rnn.run`` import neither mlx nor torch, so ``torch_ref``
can use them on a machine without MLX (docs/design.md, Layout).
"""

__version__ = "0.1.0"


def load(path, task=None):
    """Load a checkpoint directory into its MLX wrapper (see :func:`mlx_rnn.models.load`)."""
    from .models import load as _load

    return _load(path, task)
