# keras-attn developer commands. `make test` and `make demo` do their own set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BACKEND ?= jax
BACKENDS ?= jax tensorflow torch
# Extra pytest arguments, e.g. PYTEST_ARGS='-m "not large"' for a quick local run.
PYTEST_ARGS ?=

.PHONY: system install test test-fast fuzz lint docs figures demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall when the dependency list or the pins change. pip installs uv
# and torch (pip's configuration on this project's machines points it at
# the CPU build of torch on disk; uv does not read pip's configuration),
# then uv installs everything else, unpacking and byte-compiling in
# parallel: 60-75 s here against 146 s for pip alone. Should uv fail (a
# network it cannot reach, say), pip installs the rest.
$(VENV)/.installed: pyproject.toml requirements/constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c requirements/constraints.txt uv torch
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode \
	  -c requirements/constraints.txt -e ".[all]" \
	  || $(BIN)/python -m pip install -q -c requirements/constraints.txt -e ".[all]"
	touch $@

# Debian packages (speech synthesis, the docs' browser test); see the script.
system:
	bash scripts/install_system.sh

install: system $(VENV)/.installed

lint: install
	$(BIN)/ruff check .

docs: install
	$(BIN)/mkdocs build --strict

# ruff, the suite once per backend (each its own pytest process), the docs.
test: install
	BIN=$(BIN) BACKENDS="$(BACKENDS)" bash scripts/test.sh $(PYTEST_ARGS)

test-fast:
	$(MAKE) test PYTEST_ARGS='-m "not large"'

# The property tests with many random examples (hypothesis profile `fuzz`;
# `make test` runs the few fixed ones of profile `ci`), on each backend.
fuzz: install
	for b in $(BACKENDS); do HYPOTHESIS_PROFILE=fuzz KERAS_BACKEND=$$b \
	  $(BIN)/python -m pytest -q -p no:cacheprovider tests/fuzz || exit 1; done

# Every figure of the docs pages, regenerated from the scripts in docs/scripts.
figures: install
	for s in docs/scripts/make_*.py; do PYTHONPATH=. KERAS_BACKEND=$(BACKEND) $(BIN)/python $$s || exit 1; done

demo: install
	KERAS_BACKEND=$(BACKEND) $(BIN)/python examples/quickstart.py

# Every benchmark on every backend, then docs/benchmarks.md and its figures
# from their results (long; see the script for --reduced and --only).
bench: install
	$(BIN)/python benchmarks/make_report.py

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache build *.egg-info
