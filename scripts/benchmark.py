"""Time MLX against PyTorch training on identical configurations. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.bench.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
