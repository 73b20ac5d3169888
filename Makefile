# Set-up and common tasks. `make demo` and `make test` create .venv when it is missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := ci/constraints-py311-cpu.txt
PIP_CONSTRAINTS := $(shell $(PY) -c 'import sys; print("-c $(CONSTRAINTS)" if sys.version_info[:2] == (3, 11) else "")')

.PHONY: install demo test lint docs tutorials clean

$(BIN)/scsiam: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first: the local CPU wheel, so pip never resolves a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINTS) -e ".[test]"
	touch $(BIN)/scsiam

install: $(BIN)/scsiam

demo: install
	$(BIN)/scsiam demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/python -m pip install -q ruff
	$(BIN)/ruff check src tests benchmarks tutorials
	$(BIN)/ruff format --check .

docs: install
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINTS) -e ".[test,doc]"
	rm -rf docs/generated  # autosummary stubs are regenerated; stale ones would fail -W
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

tutorials: install
	$(BIN)/python -m pip install -q $(PIP_CONSTRAINTS) -e ".[test,doc]"
	cd tutorials && for f in *.py; do $(abspath $(BIN))/jupytext --to ipynb --execute "$$f" || exit 1; done

clean:
	rm -rf docs/_build build dist
