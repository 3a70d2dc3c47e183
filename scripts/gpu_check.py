"""Check the project on a GPU in one command (GPU tests, quick benchmark, default runs). See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.gpu_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
