# The two commands of the README: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test up lint bench contracts clean

$(BIN)/poolfin: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/poolfin

demo: $(BIN)/poolfin
	$(BIN)/poolfin demo

up: $(BIN)/poolfin
	$(BIN)/poolfin up

lint: $(BIN)/poolfin
	$(BIN)/ruff check shared services poolfin tests docs
	$(BIN)/ruff format --check shared services poolfin tests docs
	$(BIN)/mypy

test: $(BIN)/poolfin lint
	$(BIN)/pytest -ra

bench: $(BIN)/poolfin
	$(BIN)/poolfin bench --payments 10000 --pools 100 --ceiling
	$(BIN)/poolfin bench --payments 10000 --pools 100 --rate 500
	$(BIN)/poolfin bench --payments 10000 --pools 100 --open-receivables 1000000

contracts: $(BIN)/poolfin
	$(BIN)/poolfin contracts export

clean:
	rm -rf $(VENV) .poolfin .pytest_cache .mypy_cache .ruff_cache .hypothesis
