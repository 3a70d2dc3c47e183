"""scripts/compare.py and mlx_rnn.tools.compare: the cross-framework check as a command.

A tiny checkpoint of each task is trained in-process (MLX Trainer, a few steps on
generated text) and compared on a generated dev set, so nothing here needs the
real data. One test runs the script as a subprocess; the rest call ``main``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")
torch = pytest.importorskip("torch")

from mlx_rnn import train as mt  # noqa: E402
from mlx_rnn.core.checkpoint import save_checkpoint  # noqa: E402
from mlx_rnn.core.config import RunConfig, make_config  # noqa: E402
from mlx_rnn.core.data import CLASSIFY_FILES, LM_FILES  # noqa: E402
from mlx_rnn.core.vocab import TEXT8, VOWELS  # noqa: E402
from mlx_rnn.tools import compare  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]  # the repository
SCRIPT = ROOT / "scripts" / "compare.py"
WORDS = ("the of and one in a to zero nine two is as eight for five three was by that four six seven "
         "with on are it from or his an be this which at he also not have were has but first new").split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_text(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    words = []
    while sum(len(w) + 1 for w in words) < n + 1:
        words.append(WORDS[rng.integers(len(WORDS))])
    return " ".join(words)[:n]


def make_dev_dir(path: Path, n_examples: int = 40, dev_chars: int = 120) -> Path:
    """The three dev files the comparison reads (generated)."""
    path.mkdir(parents=True, exist_ok=True)
    text = make_text(20 * n_examples * 4, seed=1)
    cons, vows = [], []
    for i in range(0, len(text) - 21, 2):
        nxt = text[i + 20]
        if nxt != " ":
            (vows if nxt in VOWELS else cons).append(text[i:i + 20])
    (path / CLASSIFY_FILES["dev_consonant"]).write_text("\n".join(cons[:n_examples]) + "\n")
    (path / CLASSIFY_FILES["dev_vowel"]).write_text("\n".join(vows[:n_examples]) + "\n")
    (path / LM_FILES["dev"]).write_text(make_text(dev_chars, seed=2) + "\n")
    return path


def tiny_config(task: str) -> RunConfig:
    return make_config(task, device="cpu", embed_dim=8, hidden_size=16, num_layers=1, epochs=1, batch_size=4,
                       seq_len=20 if task == "classify" else 10, lr=1e-2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(data dir, checkpoint root with classify/ and lm/) — each checkpoint trained 10 MLX steps."""
    root = tmp_path_factory.mktemp("compare")
    data = make_dev_dir(root / "data")
    text = make_text(4000, seed=3)
    old = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        for task in ("classify", "lm"):
            cfg = tiny_config(task)
            if task == "classify":
                ids = TEXT8.encode(text)
                starts = np.arange(0, 40 * 7, 7)
                x = np.stack([ids[s:s + 20] for s in starts]).astype(np.int32)
                y = np.array([text[s + 20] in VOWELS for s in starts], dtype=np.int32)
                trainer = mt.Trainer(cfg, (x, y))
            else:
                trainer = mt.Trainer(cfg, TEXT8.encode(text[:4 * 11 * 10 + 10]))
            trainer.train_epoch(0)
            save_checkpoint(root / "ck" / task, trainer.weights(),
                            cfg.to_json({"framework": "mlx", "framework_version": mx.__version__}))
    finally:
        mx.set_default_device(old)
    return data, root / "ck"


def test_script_subprocess_both_tasks(setup, tmp_path):
    """The script on a --task both checkpoint directory: exit 0, summary lines, result JSON by task."""
    data, ck = setup
    out = tmp_path / "cmp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # tiny model: no thread spinning on a busy machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", str(ck), "--data-dir", str(data),
                           "--output-json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) == {"classify", "lm"}
    c, lm = result["classify"], result["lm"]
    assert c["passed"] and lm["passed"]
    assert c["tolerances"] == {"logits_abs": 1e-5, "logits_rel": 1.3e-6, "prediction_logit_abs": 1e-5}
    assert lm["tolerances"] == {"logits_abs": 1e-5, "logits_rel": 1.3e-6, "log_prob_abs": 1e-3,
                                "perplexity_rel": 1e-5}
    assert 0 <= c["max_logit_diff_ratio"] <= 1 and 0 <= lm["max_logit_diff_ratio"] <= 1
    assert c["total"] == 80 and c["mlx"]["total"] == c["torch"]["total"] == 80
    assert c["predictions_agree"] + c["predictions_disagree"] == 80
    assert c["max_abs_logit_diff"] <= 1e-5 and lm["max_abs_logit_diff"] <= 1e-5
    assert lm["num_chars"] == 120 and lm["mlx"]["log_prob"] < 0
    assert abs(lm["mlx"]["log_prob"] - lm["torch"]["log_prob"]) == pytest.approx(lm["log_prob_abs_diff"])
    for key in ("sane", "normalizes", "perplexity", "bits_per_char"):
        assert key in lm["mlx"] and key in lm["torch"]
    for b in (c, lm):
        assert b["framework"] == "mlx+torch" and b["devices"] == {"mlx": "cpu", "torch": "cpu"}
        assert b["config"]["task"] in ("classify", "lm") and b["train_time_s"] is None
    assert "[classify] PASS" in proc.stdout and "[lm] PASS" in proc.stdout
    assert "perplexity mlx" in proc.stdout and "predictions agree" in proc.stdout


def test_single_task_checkpoint_and_task_filter(setup, tmp_path, capsys):
    data, ck = setup
    out = tmp_path / "lm.json"
    assert compare.main(["--checkpoint", str(ck / "lm"), "--data-dir", str(data), "--output-json", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"lm"}
    assert compare.main(["--checkpoint", str(ck), "--task", "classify", "--data-dir", str(data),
                         "--output-json", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"classify"}


@pytest.mark.parametrize("argv, needle", [
    (["--checkpoint", "{tmp}/missing"], "checkpoint directory not found"),
    (["--checkpoint", "{ck}/lm", "--task", "classify"], "not 'classify'"),
    (["--checkpoint", "{tmp}"], "no checkpoint found"),
    (["--checkpoint", "{ck}", "--data-dir", "{tmp}/nodata"], "not found"),
    (["--checkpoint", "{ck}", "--output-json", "{ck}/lm/config.json/x.json"], "exists and is not a directory"),
])
def test_bad_input_exit_2_one_line(setup, tmp_path, capsys, argv, needle):
    data, ck = setup
    argv = [a.format(tmp=tmp_path, ck=ck) for a in argv]
    if "--data-dir" not in argv:
        argv += ["--data-dir", str(data)]
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert needle in err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as e:
        compare.main([])  # neither --checkpoint nor --train
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        compare.main(["--checkpoint", "x", "--train"])
    assert e.value.code == 2


def test_broken_tolerance_exits_1(setup, tmp_path, monkeypatch, capsys):
    data, ck = setup
    monkeypatch.setitem(compare.TOLERANCES, "logits_abs", -1.0)  # nothing can pass
    out = tmp_path / "fail.json"
    assert compare.main(["--checkpoint", str(ck), "--data-dir", str(data), "--output-json", str(out)]) == 1
    result = json.loads(out.read_text())
    assert not result["classify"]["passed"] and not result["lm"]["passed"]
    assert result["lm"]["checks"]["log_prob"] and not result["lm"]["checks"]["logits"]
    assert "parity tolerance broken" in capsys.readouterr().err


def test_train_refuses_a_bad_save_before_training(setup, tmp_path, capsys):
    """--train --save onto an existing checkpoint or a file: exit 2 at once, nothing changed."""
    data, ck = setup
    before = {p: p.read_bytes() for p in ck.rglob("*") if p.is_file()}
    args = ["--train", "--task", "classify", "--epochs", "1", "--hidden-size", "8", "--data-dir", str(data)]
    assert compare.main(args + ["--save", str(ck)]) == 2
    err = capsys.readouterr()
    assert f"already holds a checkpoint" in err.err and "epoch" not in err.out
    assert {p: p.read_bytes() for p in ck.rglob("*") if p.is_file()} == before
    f = tmp_path / "afile"
    f.write_text("precious")
    assert compare.main(args + ["--save", str(f)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err and f.read_text() == "precious"


class _FakeClassifier:
    def __init__(self, logits):
        self._logits = np.asarray(logits, dtype=np.float32)

    def logits(self, texts):
        return self._logits


def test_logit_tolerance_grows_with_the_logit():
    """|mlx - torch| <= 1e-5 + 1.3e-6 |torch| (torch.testing's float32 rule): 1.24e-5 passes at a
    logit of 12.3 (the default LM's worst position) and fails at a logit of 0.5."""
    tol = compare.TOLERANCES
    ok, ratio = compare.logits_agree(np.array([12.3 + 1.24e-5, 1.0]), np.array([12.3, 1.0]), tol)
    assert ok and ratio == pytest.approx(1.24e-5 / (1e-5 + 1.3e-6 * 12.3))
    bad, ratio = compare.logits_agree(np.array([0.5 + 1.24e-5]), np.array([0.5]), tol)
    assert not bad and ratio > 1
    assert compare.logits_agree(np.zeros(0), np.zeros(0), tol) == (True, 0.0)


def test_compare_classify_small_logit_rule():
    """A prediction may flip only where both logits are within 1e-5 of zero."""
    labels = np.array([1, 0, 1, 0])
    ok = compare.compare_classify(_FakeClassifier([2.0, -1.0, 3e-6, 0.5]),
                                  _FakeClassifier([2.0, -1.0, -4e-6, 0.5]), ["a"] * 4, labels)
    assert ok["passed"] and ok["predictions_disagree"] == 1 and ok["disagree_with_small_logit"] == 1
    assert ok["mlx"]["correct"] == 3 and ok["torch"]["correct"] == 2
    bad = compare.compare_classify(_FakeClassifier([2.0, -1.0, 3e-6, 0.5]),
                                   _FakeClassifier([2.0, -1.0, -4e-6, -0.5]), ["a"] * 4, labels,
                                   tol={"logits_abs": 10.0})
    assert bad["checks"]["logits"] and not bad["checks"]["predictions"] and not bad["passed"]


def test_train_then_compare(setup, tmp_path, capsys):
    """--train --task classify (tiny): trains with the shared runner, saves, then compares."""
    data, _ = setup
    train_dir = tmp_path / "data"
    make_dev_dir(train_dir)
    text = make_text(20 * 400, seed=4)
    cons, vows = [], []
    for i in range(0, len(text) - 21, 3):
        if text[i + 20] != " ":
            (vows if text[i + 20] in VOWELS else cons).append(text[i:i + 20])
    (train_dir / CLASSIFY_FILES["train_consonant"]).write_text("\n".join(cons[:100]) + "\n")
    (train_dir / CLASSIFY_FILES["train_vowel"]).write_text("\n".join(vows[:100]) + "\n")
    out = tmp_path / "train.json"
    rc = compare.main(["--train", "--task", "classify", "--epochs", "1", "--hidden-size", "8", "--data-dir",
                       str(train_dir), "--save", str(tmp_path / "ck"), "--output-json", str(out)])
    assert rc == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert set(result) == {"classify"} and result["classify"]["passed"]
    assert result["classify"]["epochs"] == 1 and result["classify"]["train_time_s"] > 0
    assert result["classify"]["config"]["hidden_size"] == 8
    assert (tmp_path / "ck" / "classify" / "model.safetensors").is_file()


def test_a_device_error_names_compares_own_flag(monkeypatch):
    """compare.py's devices are --device-mlx and --device-torch: an unusable one is named so."""
    from mlx_rnn.tools import compare

    class NoGpu:
        @staticmethod
        def select_device(name):
            raise ValueError(f"--device {name}: no GPU here; use --device cpu")

    with pytest.raises(ValueError, match=r"^--device-mlx gpu: no GPU here; use --device-mlx cpu$"):
        compare._select(NoGpu, "mlx", "gpu")
    assert compare._select(type("Cpu", (), {"select_device": staticmethod(lambda n: "cpu")}), "torch", "cpu") == "cpu"
