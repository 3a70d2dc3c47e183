"""Every console entry point in pyproject.toml names a real function, and --help works."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_entry_point_resolves(name):
    module, func = SCRIPTS[name].split(":")
    assert callable(getattr(importlib.import_module(module), func))


@pytest.mark.parametrize("script", ["train_mlx", "train_torch", "evaluate", "sample", "compare", "prepare_data",
                                    "benchmark", "launch_mlx"])
def test_help(script):
    out = subprocess.run([sys.executable, f"scripts/{script}.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


_AS_ENTRY_POINT = ("import sys; sys.argv[0] = {argv0!r}; from {module} import {func}; "
                   "sys.exit({func}())")  # what pip's console-script wrapper does


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_entry_point_help_names_itself(name, tmp_path):
    """`mlx-rnn-evaluate --help` says `usage: mlx-rnn-evaluate`, not the script's file name."""
    module, func = SCRIPTS[name].split(":")
    code = _AS_ENTRY_POINT.format(argv0=str(tmp_path / "bin" / name), module=module, func=func)
    out = subprocess.run([sys.executable, "-c", code, "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: {name} "), out.stdout[:200]
    # a usage error names it too
    bad = subprocess.run([sys.executable, "-c", code, "--no-such-flag"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and f"{name}: error:" in bad.stderr, bad.stderr


def test_installed_entry_point_names_itself():
    """The real console script of this environment (installed by `pip install -e .`)."""
    exe = Path(sys.executable).parent / "mlx-rnn-evaluate"
    if not exe.exists():
        pytest.skip(f"{exe} not installed in this environment")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: mlx-rnn-evaluate "), out.stdout[:200]


def test_scripts_keep_their_file_names():
    out = subprocess.run([sys.executable, "scripts/evaluate.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.startswith("usage: evaluate.py "), out.stdout[:200]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_launch_mlx_help_is_its_own(flag):
    out = subprocess.run([sys.executable, "scripts/launch_mlx.py", flag], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: launch_mlx.py "), out.stdout[:200]
    assert "non-zero when any rank failed" in out.stdout and "usage: mlx.launch" not in out.stdout
    bare = subprocess.run([sys.executable, "scripts/launch_mlx.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert bare.returncode == 2 and bare.stderr.startswith("usage: launch_mlx.py "), bare.stderr
