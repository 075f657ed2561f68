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

# The browser test drives Debian's chromium through Playwright (Playwright's own browser download is not reachable).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium > /dev/null

# Unit tests (the browser test included), then every notebook at its default smoke scale under nbval
# (outputs are not compared, --nbval-lax; smoke runs write only under the git-ignored results/smoke/).
test: venv $(CHROMIUM)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks

# Every notebook at SCALE (recorded runs are reused), the results index, then the CPU benchmark
# (not at smoke scale, which must leave the committed results alone).
reproduce: venv
	$(PY) -m rfwp.reproduce --scale $(SCALE) --jobs $(JOBS)
	$(if $(filter smoke,$(SCALE)),,$(PY) benchmarks/cpu.py)

benchmark: venv
	$(PY) benchmarks/cpu.py

.PHONY: venv test reproduce benchmark
