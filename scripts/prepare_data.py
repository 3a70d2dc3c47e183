"""Build the data files from text8 (downloaded or local) or any text. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.prepare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
