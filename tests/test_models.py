"""MLX LSTM and models: shapes, state carry, the exercise's API and checks."""

import math

import numpy as np
import pytest

import mlx.core as mx

from mlx_rnn.core.config import make_config
from mlx_rnn.core.baselines import FrequencyBasedClassifier, UniformLanguageModel
from mlx_rnn.lstm import LSTM
from mlx_rnn.core.metrics import check_normalizes, check_sane, lm_bundle
from mlx_rnn.models import RNNClassifier, RNNLanguageModel, build_model
from mlx_rnn.core.vocab import TEXT8


def config(task, layers=1, hidden=24, embed=8, dropout=0.0):
    return make_config(task, embed_dim=embed, hidden_size=hidden, num_layers=layers, dropout=dropout)


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_shapes_and_parameter_names(layers):
    mx.random.seed(0)
    lstm = LSTM(5, 7, num_layers=layers)
    names = sorted(k for k, _ in __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(lstm.parameters()))
    want = sorted(f"{p}_l{k}" for k in range(layers) for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    assert names == want
    assert lstm.weight_ih_l0.shape == (28, 5) and lstm.weight_hh_l0.shape == (28, 7)
    x = mx.random.normal((3, 4, 5))
    out, (h, c) = lstm(x)
    assert out.shape == (3, 4, 7) and h.shape == c.shape == (layers, 3, 7)
    # the top layer's last output is its final hidden state
    assert np.allclose(np.array(out[:, -1]), np.array(h[-1]), atol=1e-6)


def test_lstm_state_carry_equals_one_pass():
    """Running two halves with the carried state equals one pass over the whole sequence."""
    mx.random.seed(1)
    lstm = LSTM(5, 6, num_layers=2)
    x = mx.random.normal((2, 10, 5))
    full, (h, c) = lstm(x)
    first, state = lstm(x[:, :4])
    second, (h2, c2) = lstm(x[:, 4:], state)
    assert np.allclose(np.array(full), np.concatenate([np.array(first), np.array(second)], axis=1), atol=1e-6)
    assert np.allclose(np.array(h), np.array(h2), atol=1e-6) and np.allclose(np.array(c), np.array(c2), atol=1e-6)


def test_lstm_initial_state_is_used():
    mx.random.seed(2)
    lstm = LSTM(3, 4)
    x = mx.random.normal((1, 5, 3))
    zero, _ = lstm(x)
    h0 = mx.ones((1, 1, 4))
    given, _ = lstm(x, (h0, h0))
    assert not np.allclose(np.array(zero), np.array(given))


def test_lm_scores_a_text_in_one_pass_like_fresh_prefix_runs():
    mx.random.seed(3)
    lm = RNNLanguageModel(build_model(config("lm", layers=2)), TEXT8)
    context, text = " a person ", "sits there quietly"
    one_pass = lm.get_log_prob_sequence(text, context)
    stepwise = [float(lm.get_next_char_log_probs(context + text[:i])[TEXT8.index_of(ch)])
                for i, ch in enumerate(text)]
    assert abs(one_pass - sum(stepwise)) < 1e-5 * len(text)
    assert check_sane(lm, TEXT8) and check_normalizes(lm)


def test_lm_api_shapes_and_empty_context():
    mx.random.seed(4)
    lm = RNNLanguageModel(build_model(config("lm")), TEXT8)
    lp = lm.get_next_char_log_probs("")
    assert lp.shape == (27,)
    assert np.allclose(lp, lm.get_next_char_log_probs(" "))
    assert math.isclose(np.exp(lp.astype(np.float64)).sum(), 1.0, abs_tol=1e-5)
    assert lm.get_log_prob_sequence("", "abc") == 0.0
    with pytest.raises(ValueError, match="'X'"):
        lm.get_next_char_log_probs("aXb")


def test_classifier_api():
    mx.random.seed(5)
    clf = RNNClassifier(build_model(config("classify")), TEXT8)
    texts = ["the quick brown fox ", "jumps over the lazy ", "abc"]
    preds = clf.predict_batch(texts)
    assert preds.shape == (3,) and preds.dtype == np.int32 and set(preds.tolist()) <= {0, 1}
    assert [clf.predict(t) for t in texts] == preds.tolist()
    logits = clf.logits(texts)
    assert ((logits >= 0).astype(np.int32) == preds).all()
    with pytest.raises(ValueError):
        clf.predict("")


def test_checks_catch_a_broken_lm():
    class Unnormalised(UniformLanguageModel):
        def get_next_char_log_probs(self, context):
            return np.zeros(27, dtype=np.float32)  # sums to 27

    class Inconsistent(UniformLanguageModel):
        def get_log_prob_sequence(self, next_chars, context):
            return 0.0

    assert check_sane(UniformLanguageModel(), TEXT8) and check_normalizes(UniformLanguageModel())
    assert not check_normalizes(Unnormalised())
    assert not check_sane(Inconsistent(), TEXT8)


def test_baselines():
    clf = FrequencyBasedClassifier(["aaaab", "ccccc", "cccca"], ["xxxxb", "yyyyb", "zzzza"])
    assert clf.predict("qqqqb") == 1 and clf.predict("qqqqa") == 0
    u = UniformLanguageModel()
    b = lm_bundle(u, TEXT8, "hello world")
    assert b["perplexity"] == pytest.approx(27.0) and b["sane"] and b["normalizes"]


def test_long_sequences_are_chunked_with_equal_results(monkeypatch):
    mx.random.seed(6)
    lstm = LSTM(4, 5, num_layers=2)
    x = mx.random.normal((2, 23, 4))
    whole, (h, c) = lstm(x)
    monkeypatch.setattr(LSTM, "CHUNK", 5)
    chunked, (h2, c2) = lstm(x)
    assert np.allclose(np.array(whole), np.array(chunked), atol=1e-6)
    assert np.allclose(np.array(h), np.array(h2), atol=1e-6) and np.allclose(np.array(c), np.array(c2), atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("task", ["classify", "lm"])
def test_eval_gathers_the_first_projection_from_a_table_with_equal_results(cell, task, monkeypatch):
    """In eval mode over more positions than symbols, layer 0's input projection is a row of
    embedding.weight @ W_ih^T per symbol (models._Base.encode); the outputs equal the plain path's.
    Training, and inputs with at most V positions, take the plain path."""
    mx.random.seed(1)
    model = build_model(make_config(task, embed_dim=16, hidden_size=24, num_layers=2, cell=cell, dropout=0.3))
    rnn = model.lstm if cell == "lstm" else model.gru
    calls = []
    real = type(rnn).__call__
    monkeypatch.setattr(type(rnn), "__call__", lambda self, x, state=None, projected=None:
                        calls.append(projected is not None) or real(self, x, state, projected=projected))
    ids = mx.array(np.random.default_rng(2).integers(0, 27, (3, 20)).astype(np.int32))
    model.eval()
    gathered = model.encode(ids)[0]
    plain = model.recurrent(model.embedding(ids))[0]
    np.testing.assert_allclose(np.array(gathered), np.array(plain), rtol=0, atol=1e-6)
    model.encode(ids[:1, :5])  # 5 positions, fewer than the 27 symbols: the plain product
    model.train()
    model.encode(ids)
    assert calls == [True, False, False, False]
