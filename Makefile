# Two entry points (see README): `make reproduce` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
JOBS ?= 2

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name rfwp --display-name "rfwp (Python 3)" > /dev/null
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0') and torch.version.cuda is None, torch.__version__"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q tests

reproduce: venv
	$(PY) -m rfwp.reproduce --scale $(SCALE) --jobs $(JOBS)

benchmark: venv
	$(PY) benchmarks/cpu.py

.PHONY: venv test reproduce benchmark
