"""The benchmark's names and constants, in one place: what is timed (frameworks, the standard
configurations), how a framework variant is run, and the worker's message prefix.

Every module of :mod:`mlx_rnn.tools.bench` takes these from here, so that none of them
imports another only for a constant (no import cycle). Imports nothing.
"""

from __future__ import annotations

#: "mlx" runs whatever path MLX_RNN_LSTM_IMPL picks (default: the native primitives on the CPU);
#: "mlx-op" forces the Python-level op and mlx.optimizers' AdamW (the path before the primitives).
FRAMEWORKS = ("mlx", "mlx-op", "torch")
#: each one's name in the report
FRAMEWORK_NAMES = {"mlx": "MLX", "mlx-op": "MLX op", "torch": "PyTorch"}
#: the framework package a variant runs in, and the environment that makes it the variant
BASE_FRAMEWORK = {"mlx": "mlx", "mlx-op": "mlx", "torch": "torch"}
VARIANT_ENV = {"mlx-op": {"MLX_RNN_LSTM_IMPL": "op", "MLX_RNN_ADAMW": "mlx", "MLX_RNN_LAYERS": "mlx"}}

#: The standard configurations: the trainers' defaults of both tasks (classify, lm) and the
#: longer-sequence LM that the benchmark measured before the defaults changed (lm-t100).
STANDARD_CONFIGS = {
    "classify": dict(task="classify", embed_dim=32, hidden_size=128, num_layers=1, batch_size=64, seq_len=20),
    "lm": dict(task="lm", embed_dim=512, hidden_size=512, num_layers=2, batch_size=32, seq_len=25),
    "lm-t100": dict(task="lm", embed_dim=64, hidden_size=512, num_layers=2, batch_size=32, seq_len=100),
}
#: the settings that size a model and a batch, in the order matmul_flops_per_step takes them
SIZE_KEYS = ("embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len")
#: the vocabulary of the timed models (text8: a-z and space)
VOCAB_SIZE = 27
#: --quick: timed batches per repeat (a classifier batch takes milliseconds, an LM batch seconds).
QUICK_BATCHES = {"classify": 10, "lm": 4}
#: --quick: untimed warm-up batches (the first includes tracing and compilation).
QUICK_WARMUP = {"classify": 3, "lm": 2}
#: the environment variables the report records (threads, BLAS, activations)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "OMP_WAIT_POLICY", "MLX_RNN_BLAS", "MLX_RNN_LSTM_ACT")

#: the prefix of a worker's messages on its stdout (every other line is the framework's own)
MARK = "@@bench "
