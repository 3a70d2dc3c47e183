"""Train with several seeds and report mean +- standard deviation of the dev figures. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.seeds import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
