"""Run MLX and PyTorch on the same checkpoint over the dev data and check they agree. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.compare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
