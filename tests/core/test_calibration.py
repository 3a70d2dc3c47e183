"""Temperature scaling of the LM (mlx_rnn.core.calibration): the fit, both frameworks, the trainers."""

import json

import numpy as np
import pytest

from mlx_rnn.core import checkpoint as ckpt
from mlx_rnn.core.calibration import T_RANGE, fit_temperature, mean_nll
from mlx_rnn.core.metrics import lm_bundle
from tests.synthetic import fake_checkpoint, make_data_dir, run_script

TINY = ["--hidden-size", "16", "--embed-dim", "8", "--batch-size", "8", "--seq-len", "10", "--quiet"]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fit_recovers_the_temperature_that_generated_the_targets():
    rng = np.random.default_rng(0)
    z = 3.0 * rng.standard_normal((20000, 27))
    for true_t in (0.7, 1.0, 2.0):
        p = _softmax(z / true_t)
        y = (p.cumsum(axis=1) > rng.random((len(z), 1))).argmax(axis=1)
        t = fit_temperature(z, y)
        assert abs(t - true_t) < 0.05 * true_t, (true_t, t)
        best = mean_nll(z, y, t)
        assert best <= mean_nll(z, y, t * 1.05) and best <= mean_nll(z, y, t / 1.05)


def test_mean_nll_is_the_cross_entropy_of_the_scaled_logits():
    rng = np.random.default_rng(1)
    z, y = rng.standard_normal((50, 5)) * 4, rng.integers(0, 5, 50)
    ref = -np.log(_softmax(z / 1.3)[np.arange(50), y]).mean()
    assert mean_nll(z, y, 1.3) == pytest.approx(ref, rel=1e-12)


def test_fit_clips_to_the_range_and_rejects_bad_input():
    z = np.array([[10.0, 0.0], [10.0, 0.0]])
    assert fit_temperature(z, np.array([0, 0])) == T_RANGE[0]  # always right: as sharp as allowed
    assert fit_temperature(z, np.array([0, 1])) == T_RANGE[1]  # half wrong: as flat as allowed
    for bad_z, bad_y in ((np.zeros((0, 3)), np.zeros(0, int)), (np.zeros((2, 3)), np.zeros(3, int)),
                         (np.array([[np.nan, 0.0]]), np.array([0]))):
        with pytest.raises(ValueError):
            fit_temperature(bad_z, bad_y)


def _calibrated(tmp_path, temperature):
    path = fake_checkpoint(tmp_path / f"lm{temperature}", "lm", hidden_size=16, embed_dim=8, seed=3)
    weights, cfg = ckpt.load_checkpoint(path)
    ckpt.save_checkpoint(path, weights, cfg.replace(calibration_temperature=temperature).to_json())
    return path


def test_calibrated_lm_agrees_across_frameworks(tmp_path):
    mlx_models = pytest.importorskip("mlx_rnn.models")
    torch_models = pytest.importorskip("torch_ref.models")
    raw, hot = _calibrated(tmp_path, 1.0), _calibrated(tmp_path, 1.7)
    text, ctx = "the cat sat on the mat", " a "
    figures = {}
    for name, mod in (("mlx", mlx_models), ("torch", torch_models)):
        lm, lm_raw = mod.load(hot), mod.load(raw)
        assert lm.calibration_temperature == 1.7 and lm_raw.calibration_temperature == 1.0
        lp = lm.get_next_char_log_probs(ctx)
        assert abs(np.exp(lp.astype(np.float64)).sum() - 1) < 1e-5
        # the calibrated log-probabilities are log_softmax(raw logits / T)
        z = lm.logits_sequence(ctx)[-1].astype(np.float64) / 1.7
        assert np.allclose(lp, z - np.log(np.exp(z - z.max()).sum()) - z.max(), atol=1e-5)
        b = lm_bundle(lm, lm.vocab, text, ctx)
        b_raw = lm_bundle(lm_raw, lm_raw.vocab, text, ctx)
        assert b["calibration_temperature"] == 1.7 and b["sane"] and b["normalizes"]
        assert b["uncalibrated_perplexity"] == pytest.approx(b_raw["perplexity"], rel=1e-5)
        assert b["perplexity"] != pytest.approx(b_raw["perplexity"], rel=1e-3)
        figures[name] = (b["perplexity"], lm.sample(" the", 40, temperature=1.0, seed=5))
    assert figures["mlx"][0] == pytest.approx(figures["torch"][0], rel=1e-5)
    assert figures["mlx"][1] == figures["torch"][1]


@pytest.mark.parametrize("key, bad", [("calibration_temperature", v) for v in (0, -1.0, "hot", None, 1e-30, 1e30)]
                         + [("calibrate", v) for v in ("no", 1, None)])
def test_bad_calibration_setting_in_a_checkpoint_is_a_checkpoint_error(tmp_path, key, bad):
    path = fake_checkpoint(tmp_path / "lm", "lm")
    cfg = json.loads((path / "config.json").read_text())
    cfg[key] = bad
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ckpt.CheckpointError, match=key):
        ckpt.read_config(path)


@pytest.mark.parametrize("script", ["train_mlx", "train_torch"])
def test_trainer_fits_stores_and_reports_the_temperature(tmp_path, script):
    data = make_data_dir(tmp_path / "data")
    out, save = tmp_path / "r.json", tmp_path / "lm"
    proc = run_script(script, "--task", "lm", "--data-dir", data, "--epochs", "2", "--save", save,
                      "--output-json", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    b = json.loads(out.read_text())["lm"]
    t = json.loads((save / "config.json").read_text())["calibration_temperature"]
    assert T_RANGE[0] <= t <= T_RANGE[1] and b["calibration_temperature"] == t == b["config"]["calibration_temperature"]
    assert "calibration temperature" in proc.stdout + proc.stderr
    assert {"uncalibrated_perplexity", "uncalibrated_bits_per_char"} <= set(b)
    # evaluation of the checkpoint applies the stored temperature, in both frameworks
    for fw in ("mlx", "torch"):
        ev = run_script("evaluate", "--checkpoint", save, "--framework", fw, "--data-dir", data,
                        "--output-json", tmp_path / f"e{fw}.json")
        assert ev.returncode == 0, ev.stderr
        e = json.loads((tmp_path / f"e{fw}.json").read_text())["lm"]
        assert e["perplexity"] == pytest.approx(b["perplexity"], rel=1e-5)
        assert e["uncalibrated_perplexity"] == pytest.approx(b["uncalibrated_perplexity"], rel=1e-5)
    # a resumed run may extend training; it fits the temperature again
    proc = run_script(script, "--resume", save, "--epochs", "3", "--output-json", out, "--data-dir", data, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["lm"]["epochs"] == 3
    # switching calibration off on resume, with no better epoch: the checkpoint follows the report
    proc = run_script(script, "--resume", save, "--no-calibrate", "--output-json", out, "--data-dir", data, "--quiet")
    assert proc.returncode == 0, proc.stderr
    b = json.loads(out.read_text())["lm"]
    cfg = json.loads((save / "config.json").read_text())
    assert b["calibration_temperature"] == 1.0 and "calibration_temperature" not in cfg and cfg["calibrate"] is False
    ev = run_script("evaluate", "--checkpoint", save, "--data-dir", data, "--output-json", tmp_path / "ev.json")
    assert ev.returncode == 0, ev.stderr
    assert json.loads((tmp_path / "ev.json").read_text())["lm"]["perplexity"] == pytest.approx(b["perplexity"], rel=1e-5)
    # --no-calibrate: the raw model
    proc = run_script(script, "--task", "lm", "--data-dir", data, "--epochs", "1", "--no-calibrate",
                      "--save", tmp_path / "raw", "--output-json", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    b = json.loads(out.read_text())["lm"]
    assert b["calibration_temperature"] == 1.0 and b["uncalibrated_perplexity"] == pytest.approx(b["perplexity"])
    assert "calibration_temperature" not in json.loads((tmp_path / "raw" / "config.json").read_text())


@pytest.mark.parametrize("fw", ["mlx", "torch"])
def test_batched_validation_loss_equals_the_sum_of_sequence_log_probs(tmp_path, fw):
    from mlx_rnn.run.evaluation import validation_loss

    mod = pytest.importorskip("mlx_rnn.models" if fw == "mlx" else "torch_ref.models")
    lm = mod.load(fake_checkpoint(tmp_path / "lm", "lm", seed=4))
    blocks = ["the cat sat on the mat", "a dog ran in the park ", "one two three four five", "zz"]
    want = -sum(lm.get_log_prob_sequence(b[1:], b[0]) for b in blocks) / sum(len(b) - 1 for b in blocks)
    assert validation_loss("lm", lm, blocks) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="one length"):
        lm.logits_batch(["ab", "abc"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        lm.logits_batch(["aB"])
