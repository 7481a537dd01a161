# Two commands do all the set-up on a fresh machine: `make train` and `make test`.
# Both create .venv (with cnnlab installed editable and its dev tools) when it is missing, and
# build cnnlab's compiled CPU kernels (src/cnnlab/csrc, cached per CPU kind; without a compiler
# the Python algorithms run instead, with a warning).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# This workplace's CIFAR-10 copy: `make venv` writes .env pointing at it (train.py reads .env).
SHARED_DATA := $(abspath ../shared/data)

.PHONY: venv train test lint bench docs clean
.DEFAULT_GOAL := test

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev,launchers,search,onnx,docs]'
	test -e .env || test ! -d $(SHARED_DATA)/cifar-10-batches-py || echo "CNNLAB_DATA=$(SHARED_DATA)" > .env
	touch $@

$(VENV)/.native: $(VENV)/.installed $(wildcard src/cnnlab/csrc/*.cpp src/cnnlab/csrc/*.h)
	$(PY) -c 'from cnnlab.functional import native; native.main()' || echo "cnnlab: compiled CPU kernels not built; the Python algorithms will run"
	touch $@

venv: $(VENV)/.installed $(VENV)/.native

train: venv
	$(PY) train.py experiment=cifar_fast $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The whole suite (compiled kernels where built), then the layer equivalence tests again on the
# Python algorithms alone, as a machine without a compiler runs them.
test: lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)
	CNNLAB_NATIVE=0 $(PY) -m pytest -n 2 -q -m "not slow" tests/functional tests/nn $(PYTEST_ARGS)

# The API reference built from the docstrings (mkdocs + mkdocstrings) into outputs/site
docs: venv
	$(VENV)/bin/mkdocs build --strict -f docs/mkdocs.yml

bench: venv
	$(PY) benchmarks/layers.py $(ARGS)
	$(PY) benchmarks/train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
