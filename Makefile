# Two commands on a fresh clone:  `make demo` runs the main job, `make test` runs the tests.
# Both create ./.venv with the Python found as $(PYTHON) and install this package into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-finder test test-fast bench lint format typecheck hooks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m clearout_provider.demo

# The Email Finder enrichment DAG against the sandbox's seeded leads (name + company domain, no email).
demo-finder: $(STAMP)
	$(BIN)/python -m clearout_provider.demo --dag finder

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The unit tests only, without the ones marked slow: no server, no subprocess, well under a minute.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit -m "not slow" $(PYTEST_ARGS)

# Every benchmark, judged by ratios to baselines measured in the same run; writes bench/results.md.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# What CI checks before the tests: the ruff rules and formatting of [tool.ruff] in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Apply what `make lint` asks for (safe fixes and formatting).
format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# mypy over plugins/ and dags/ ([tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

# Run ruff and mypy on every commit (.pre-commit-config.yaml; the hooks use this venv, no download).
hooks: $(STAMP)
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) .airflow .demo .mypy_cache .ruff_cache
