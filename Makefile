# Two commands for a new user:  make train   and   make test   (README "Set-up").
# The first use of either creates .venv (about 1.2 GB: MLX, PyTorch, matplotlib, pytest) and
# installs the project into it, building its native MLX extension (about a minute).
#   - Python >= 3.10 is required (macOS's /usr/bin/python3 is 3.9: use python.org's, or brew's).
#   - Linux without an NVIDIA GPU: PyTorch's CPU build from PyTorch's CPU wheel index (no CUDA
#     packages); where that index cannot be reached, the default index's torch==2.13.0.
#   - Optional, Linux, as root: `make blas` installs OpenBLAS, which MLX's CPU wheel needs to be fast.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_VERSION := 2.13.0

.PHONY: setup train test benchmark blas clean

$(VENV)/.installed: pyproject.toml setup.py mlx_rnn/native/CMakeLists.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else \
	  f"mlx-rnn needs Python >= 3.10, but $(PYTHON) is {v.major}.{v.minor}: run make PYTHON=python3.11 (or any >= 3.10)")'
	@echo "Creating $(VENV) (about 1.2 GB) and installing mlx-rnn with its extras; this takes a few minutes once."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ "$$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "Linux without an NVIDIA GPU: PyTorch's CPU build from $(TORCH_CPU_INDEX)"; \
	  $(PY) -m pip install --quiet --timeout 20 --retries 1 --index-url $(TORCH_CPU_INDEX) "torch==$(TORCH_VERSION)" \
	  || echo "PyTorch's CPU index could not be reached: installing torch==$(TORCH_VERSION) from the default index"; \
	fi
	$(PY) -m pip install --quiet -e ".[torch,dev,plot]"
	@$(PY) -c 'from mlx_rnn import recurrence; print("mlx-rnn installed; MLX recurrence:", recurrence.describe())'
	touch $@

setup: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) scripts/train_mlx.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

benchmark: $(VENV)/.installed
	$(PY) scripts/benchmark.py $(ARGS)

# Debian/Ubuntu's OpenBLAS: MLX's Linux CPU wheel links a reference BLAS about 30x slower.
blas:
	@if [ "$$(uname -s)" != "Linux" ]; then echo "make blas: only needed on Linux (macOS MLX uses Accelerate)"; exit 0; fi; \
	if ldconfig -p | grep -q libopenblas.so.0; then echo "OpenBLAS is already installed"; exit 0; fi; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libopenblas0-pthread

clean:
	rm -rf $(VENV) *.egg-info build mlx_rnn/native/_ext*.so
