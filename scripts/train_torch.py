"""Train the text8 character models with PyTorch (the reference twin). See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.run.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("torch"))
