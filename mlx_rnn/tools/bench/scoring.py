"""Long-text scoring speed and memory, MLX against PyTorch (``benchmark.py --scoring``).

Each (framework, text length) runs in a fresh subprocess (``python -m mlx_rnn.tools.bench.scoring``),
so its peak RSS (``ru_maxrss``) is that of scoring one text of that length: a language model
with the LM defaults' sizes and fixed random weights (identical in both frameworks) scores a
random text8 text through ``get_log_prob_sequence`` (the chunked pass of :mod:`mlx_rnn.core.scoring`).
The worker prints one JSON line: characters, seconds, characters per second, peak RSS, and the
RSS before scoring (model loaded, text encoded), so the growth due to scoring is visible.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from .names import FRAMEWORK_NAMES

#: the text lengths scored by default, and the one ``--scoring-1m`` adds
SCORING_CHARS = (10_000, 100_000)
SCORING_1M = 1_000_000
#: the LM defaults' sizes (mlx_rnn.core.config.TASK_DEFAULTS["lm"])
SCORING_SIZES = dict(embed_dim=512, hidden_size=512, num_layers=2)


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        from .worker import peak_rss_bytes

        return peak_rss_bytes()


def _wrapper(framework: str, sizes: dict, seed: int):
    from mlx_rnn.core.checkpoint import expected_shapes
    from mlx_rnn.core.config import make_config

    cfg = make_config("lm", dropout=0.0, **sizes)
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(sizes["hidden_size"])
    weights = {n: rng.uniform(-k, k, s).astype(np.float32) for n, s in expected_shapes(cfg).items()}
    models = __import__("mlx_rnn.models" if framework == "mlx" else "torch_ref.models", fromlist=["build_model"])
    model = models.build_model(cfg)
    model.load_numpy(weights)
    return models.wrap(model, cfg)


def score_once(framework: str, chars: int, sizes: dict, seed: int = 0) -> dict:
    """Score a random text of ``chars`` symbols in this process; the figures as a dict."""
    from .worker import peak_rss_bytes
    from mlx_rnn.core.vocab import TEXT8_SYMBOLS

    lm = _wrapper(framework, sizes, seed)
    rng = np.random.default_rng(seed + 1)
    text = "".join(np.array(list(TEXT8_SYMBOLS))[rng.integers(0, 27, chars)])
    lm.get_log_prob_sequence(text[:64], " ")  # warm-up (first-call set-up), not timed
    rss_before = _rss_bytes()
    t = time.perf_counter()
    log_prob = lm.get_log_prob_sequence(text, " ")  # (returns a float: the work is done)
    seconds = time.perf_counter() - t
    return dict(framework=framework, chars=chars, time_s=seconds, chars_per_s=chars / seconds,
                peak_rss_bytes=peak_rss_bytes(), rss_before_bytes=rss_before, log_prob=log_prob,
                score_chunk=lm.score_chunk, **sizes)


def measure_scoring(frameworks, lengths, sizes: dict | None = None, threads: int | None = None,
                    log=lambda *a: None, timeout_s: float = 3600.0) -> list[dict]:
    """One subprocess per (length, framework), alternating frameworks; rows of figures."""
    sizes = dict(SCORING_SIZES, **(sizes or {}))
    env = dict(os.environ)
    if threads:
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    rows = []
    for n in lengths:
        for fw in frameworks:  # "mlx-op": MLX on the Python-level op (names.VARIANT_ENV)
            base = "mlx" if fw.startswith("mlx") else fw
            cmd = [sys.executable, "-m", "mlx_rnn.tools.bench.scoring", "--framework", base, "--chars", str(n),
                   "--sizes", json.dumps(sizes)]
            fw_env = dict(env, **({"MLX_RNN_LSTM_IMPL": "op"} if fw == "mlx-op" else {}))
            p = subprocess.run(cmd, capture_output=True, text=True, env=fw_env, timeout=timeout_s)
            if p.returncode != 0:
                tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
                raise RuntimeError(f"scoring worker {fw} ({n} characters) failed with exit code "
                                   f"{p.returncode}: {tail}")
            row = dict(json.loads(p.stdout.strip().splitlines()[-1]), framework=fw)
            log(f"[scoring] {fw} {n:,} characters: {row['chars_per_s']:,.0f} chars/s, "
                f"peak RSS {row['peak_rss_bytes'] / 2**20:,.0f} MiB")
            rows.append(row)
    return rows


def format_scoring(rows: list[dict]) -> str:
    """A Markdown table of the scoring rows (empty string when there are none)."""
    if not rows:
        return ""
    r0 = rows[0]
    lines = [f"### Long-text scoring (E={r0['embed_dim']}, H={r0['hidden_size']}, {r0['num_layers']} layers, "
             f"chunks of {r0['score_chunk']} characters)", "",
             "| characters | framework | time (s) | chars/s | peak RSS | RSS before scoring |",
             "| --: | --- | --: | --: | --: | --: |"]
    for r in rows:
        lines.append(f"| {r['chars']:,} | {FRAMEWORK_NAMES.get(r['framework'], r['framework'])} | {r['time_s']:.2f} | "
                     f"{r['chars_per_s']:,.0f} | {r['peak_rss_bytes'] / 2**20:,.0f} MiB | "
                     f"{r['rss_before_bytes'] / 2**20:,.0f} MiB |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="one scoring measurement (a worker of benchmark.py --scoring)")
    p.add_argument("--framework", choices=("mlx", "torch"), required=True)
    p.add_argument("--chars", type=int, required=True)
    p.add_argument("--sizes", default=json.dumps(SCORING_SIZES))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.framework == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    print(json.dumps(score_once(args.framework, args.chars, json.loads(args.sizes), args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
