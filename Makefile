# Two commands for a new user:  make train   and   make test   (README "Set-up").
# The first use of either creates .venv (about 1.2 GB: MLX, PyTorch, matplotlib, pytest) and
# installs the project into it, building its native MLX extension (about a minute).
#   - Python >= 3.10 is required (macOS's /usr/bin/python3 is 3.9: use python.org's, or brew's).
#   - Linux without an NVIDIA GPU: MLX's CPU build, and PyTorch's CPU build from PyTorch's CPU wheel
#     index (no CUDA packages); where that index cannot be reached, the default index's torch==2.13.0.
#   - Linux with an NVIDIA driver: MLX's CUDA build (mlx[cuda13] or mlx[cuda12], from the CUDA version
#     the driver supports) and PyTorch's CUDA build. `make setup BACKEND=cpu` (or cuda12, cuda13)
#     forces a choice; the two MLX builds are never installed together (both ship libmlx.so).
#   - macOS: MLX's Metal build and PyTorch from PyPI.
#   - Optional, Linux, as root: `make blas` installs OpenBLAS, which MLX's CPU wheel needs to be fast.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CUDA12_INDEX ?= https://download.pytorch.org/whl/cu128
TORCH_VERSION := 2.13.0
# Which MLX and PyTorch builds: auto (from the machine: mlx_rnn/tools/backend_choice.py), cpu, cuda12, cuda13.
BACKEND ?= auto

# A forced BACKEND other than the one .venv holds: install again (the other MLX build is removed first).
ifneq ($(BACKEND),auto)
ifneq ($(shell cat $(VENV)/.backend 2>/dev/null),$(BACKEND))
$(shell rm -f $(VENV)/.installed)
endif
endif

.PHONY: setup train test benchmark gpu-check blas clean

$(VENV)/.installed: pyproject.toml setup.py mlx_rnn/native/CMakeLists.txt mlx_rnn/tools/backend_choice.py
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 10) else \
	  f"mlx-rnn needs Python >= 3.10, but $(PYTHON) is {v.major}.{v.minor}: run make PYTHON=python3.11 (or any >= 3.10)")'
	@choice=$$($(PYTHON) -m mlx_rnn.tools.backend_choice --backend "$(BACKEND)" --torch-cpu-index "$(TORCH_CPU_INDEX)" \
	  --torch-cuda12-index "$(TORCH_CUDA12_INDEX)") || exit 2; eval "$$choice"; set -e; \
	echo "$$MESSAGE"; \
	echo "Creating $(VENV) (about 1.2 GB with the CPU builds, several GB with CUDA) and installing mlx-rnn with its extras; this takes a few minutes once."; \
	$(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip; \
	if [ -n "$$MLX_REMOVE" ]; then $(PY) -m pip uninstall --quiet -y $$MLX_REMOVE >/dev/null 2>&1 || true; fi; \
	if [ -f $(VENV)/.backend ] && [ "$$(cat $(VENV)/.backend)" != "$$BACKEND" ]; then \
	  echo "$(VENV) held the $$(cat $(VENV)/.backend) builds: replacing PyTorch too"; $(PY) -m pip uninstall --quiet -y torch || true; \
	fi; \
	if [ -n "$$TORCH_INDEX" ]; then \
	  $(PY) -m pip install --quiet --timeout 20 --retries 1 --index-url "$$TORCH_INDEX" "torch==$(TORCH_VERSION)" \
	  || echo "PyTorch's index $$TORCH_INDEX could not be reached: installing torch==$(TORCH_VERSION) from the default index"; \
	fi; \
	$(PY) -m pip install --quiet -e ".[torch,dev,plot$${MLX_EXTRA:+,$$MLX_EXTRA}]"; \
	echo "$$BACKEND" > $(VENV)/.backend
	@$(PY) -c 'from mlx_rnn import recurrence, train; print("mlx-rnn installed; MLX default device:", train.select_device("auto"), "- recurrence:", recurrence.describe())'
	touch $@

setup: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) scripts/train_mlx.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

benchmark: $(VENV)/.installed
	$(PY) scripts/benchmark.py $(ARGS)

# On a GPU machine: the GPU tests, the quick benchmark and both default runs on the GPU (about 6 minutes
# on an H100/H200); writes results/gpu-check-DATE.json. Without a GPU: one line, exit 2.
gpu-check: $(VENV)/.installed
	$(PY) scripts/gpu_check.py $(ARGS)

# Debian/Ubuntu's OpenBLAS: MLX's Linux CPU wheel links a reference BLAS about 30x slower.
blas:
	@if [ "$$(uname -s)" != "Linux" ]; then echo "make blas: only needed on Linux (macOS MLX uses Accelerate)"; exit 0; fi; \
	if ldconfig -p | grep -q libopenblas.so.0; then echo "OpenBLAS is already installed"; exit 0; fi; \
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libopenblas0-pthread

clean:
	rm -rf $(VENV) *.egg-info build mlx_rnn/native/_ext*.so
