# One command each: `make demo`, `make test`, `make lint`, `make bench`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The peers and matplotlib: the benchmark tests use them, the library never does.
$(VENV)/.bench-installed: benchmarks/requirements.txt | $(VENV)/.installed
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	touch $@

.PHONY: install demo test lint bench
install: $(VENV)/.installed

demo: install
	$(PY) examples/quickstart.py

test: install $(VENV)/.bench-installed
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: install $(VENV)/.bench-installed
	$(PY) -m benchmarks
