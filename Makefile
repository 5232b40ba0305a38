# Two entry points for a fresh machine with only python3:
#   make demo   set up what the main job needs, run it
#   make test   set up the development environment, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-all lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/divjax demo

test: $(VENV)/.dev
	$(BIN)/ruff check divjax tests benchmarks examples
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-all: $(VENV)/.dev
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m ""

bench: $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) divjax_out
