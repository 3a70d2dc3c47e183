"""Time LSTM forward+backward: MLX custom-VJP op vs MLX autodiff loop vs torch.nn.LSTM. See --help."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlx_rnn.tools.profile_step import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
