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

.PHONY: install demo test lint bench
install: $(VENV)/.installed

demo: install
	$(PY) examples/quickstart.py

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: install
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	$(PY) -m benchmarks
