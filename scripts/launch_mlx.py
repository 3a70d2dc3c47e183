"""mlx.launch with an exit status that is non-zero when a rank failed. See mlx_rnn/tools/launch.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.launch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
