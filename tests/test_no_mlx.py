"""torch_ref works where mlx is not installed: train a tiny PyTorch model, load its checkpoint
and score with it, in processes where any ``import mlx`` fails as it would without the package."""

import json
import subprocess
import sys
import textwrap

import pytest

from synthetic import ROOT, SCRIPTS, TINY, make_data_dir, script_env

pytest.importorskip("torch")

# A sitecustomize that makes mlx (and only mlx: mlx_rnn stays) unimportable in every process.
BLOCKER = textwrap.dedent(
    """
    import sys

    class _NoMLX:
        def find_spec(self, name, path=None, target=None):
            if name == "mlx" or name.startswith("mlx."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by tests/test_no_mlx.py)", name=name)
            return None

    sys.meta_path.insert(0, _NoMLX())
    """
)

CHILD = textwrap.dedent(
    """
    import json, sys
    import torch_ref
    from mlx_rnn.core import backend
    lm = torch_ref.load(sys.argv[1])
    lp = lm.get_log_prob_sequence("the cat", " ")
    probs = lm.get_next_char_log_probs("the ")
    same = backend.load("torch", sys.argv[1]).get_log_prob_sequence("the cat", " ")
    print("RESULT " + json.dumps({"log_prob": lp, "v": len(probs), "same": same,
                                   "mlx_loaded": any(m == "mlx" or m.startswith("mlx.") for m in sys.modules)}))
    """
)


@pytest.fixture
def no_mlx_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = script_env()
    env["PYTHONPATH"] = str(site) + ":" + str(ROOT)
    probe = subprocess.run([sys.executable, "-c", "import mlx.core"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert probe.returncode != 0 and "blocked by tests/test_no_mlx.py" in probe.stderr, probe.stderr
    return env


def test_torch_ref_trains_loads_and_scores_without_mlx(tmp_path, no_mlx_env):
    data = make_data_dir(tmp_path / "data")
    save = tmp_path / "lm"
    out_json = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(SCRIPTS["train_torch"]), "--task", "lm", "--epochs", "1", *TINY,
                           "--data-dir", str(data), "--save", str(save), "--output-json", str(out_json)],
                          capture_output=True, text=True, env=no_mlx_env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out_json.read_text())
    assert result["lm"]["framework"] == "torch" and result["lm"]["sane"]
    assert (save / "model.safetensors").is_file()

    proc = subprocess.run([sys.executable, "-c", CHILD, str(save)], capture_output=True, text=True,
                          env=no_mlx_env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert out["v"] == 27 and out["log_prob"] < 0 and out["same"] == out["log_prob"]
    assert out["mlx_loaded"] is False


def test_torch_evaluate_without_mlx(tmp_path, no_mlx_env):
    data = make_data_dir(tmp_path / "data")
    save = tmp_path / "clf"
    proc = subprocess.run([sys.executable, str(SCRIPTS["train_torch"]), "--task", "classify", "--epochs", "1",
                           *TINY, "--data-dir", str(data), "--save", str(save)],
                          capture_output=True, text=True, env=no_mlx_env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPTS["evaluate"]), "--framework", "torch", "--checkpoint",
                           str(save), "--data-dir", str(data), "--device", "cpu"],
                          capture_output=True, text=True, env=no_mlx_env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout
