# Two commands for a new user:  make train   and   make test
# The first use creates .venv and installs the project with all extras
# (on Linux the torch extra pins the CPU build torch==2.13.0).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup train test benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[torch,dev,plot]"
	touch $@

setup: $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) scripts/train_mlx.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q -rs $(PYTEST_ARGS)

benchmark: $(VENV)/.installed
	$(PY) scripts/benchmark.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info
