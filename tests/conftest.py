"""Shared fixtures: the real data directory (skip without it, fail under CI=true), a small
generated one, and one torch thread.

The tests mirror the package: ``tests/core``, ``tests/native``, ``tests/run`` and ``tests/tools``
test ``mlx_rnn/core``, ``mlx_rnn/native``, ``mlx_rnn/run`` and ``mlx_rnn/tools``; the files here
test the package's top-level modules (models, LSTM/GRU, layers, the LSTM op, the BLAS preload,
data-parallel training), ``torch_ref`` and the parity between them, and the project as a whole
(layering, docs, entry points, CI). Helpers sit beside their tests: ``synthetic.py`` (tiny
data, checkpoints and script runs, for every folder), ``parity_helpers.py``, ``dist_worker.py``,
``kill_at_save.py``, ``core/prepare_helpers.py``.
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mlx_rnn.device  # noqa: E402,F401  (preload OpenBLAS before any test imports mlx.core)

DATA_FILES = ("text8-100k.txt", "text8-dev.txt", "train-consonant-examples.txt",
              "train-vowel-examples.txt", "dev-consonant-examples.txt", "dev-vowel-examples.txt")


def real_data_dir() -> Path | None:
    env = os.environ.get("MLX_RNN_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT / "data"]:
        if all((cand / f).is_file() for f in DATA_FILES):
            return cand
    return None


#: The device-pair fixture parameters (tests/parity_helpers.py) that need an accelerator.
ACCELERATORS = ("gpu", "cuda", "mps")


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs an accelerator ``gpu``: those explicitly marked, and each
    parametrisation of the ``devices`` fixture with a GPU on either side, so that
    ``pytest -m gpu`` (scripts/gpu_check.py) selects them all."""
    for item in items:
        pair = getattr(getattr(item, "callspec", None), "params", {}).get("devices")
        if pair is not None and any(d in ACCELERATORS for d in pair):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real text8 data; skipped when absent, except under CI=true where that is a failure."""
    d = real_data_dir()
    if d is None:
        msg = ("real text8 data not found: set MLX_RNN_DATA to the directory with "
               + ", ".join(DATA_FILES))
        if os.environ.get("CI") == "true":
            pytest.fail(msg + " (CI=true: the data must be present)")
        pytest.skip(msg)
    return d


@pytest.fixture(scope="module")
def good_data(tmp_path_factory) -> Path:
    """A small generated data directory (tests/synthetic.py), one per test module."""
    from tests.synthetic import make_data_dir

    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: one intra-op thread is fastest and avoids OpenMP spinning on a busy machine."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session", autouse=True)
def repository_left_clean():
    """No test leaves checkpoints in the repository: a trainer run without --save writes under
    ./runs (and one with --no-save, on Ctrl-C, under ./checkpoints), so tests pass --save DIR,
    --no-save or a temporary working directory. Checked once, after the last test."""
    def entries():
        return {name: sorted(os.listdir(ROOT / name)) if (ROOT / name).is_dir() else None
                for name in ("runs", "checkpoints")}

    before = entries()
    yield
    after = entries()
    assert after == before, f"the tests left checkpoint directories in {ROOT}: before {before}, after {after}"
