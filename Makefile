# The two commands of the README: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: demo test up lint bench contracts clean chromium

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

test: $(BIN)/poolfin lint chromium
	$(BIN)/pytest -ra --durations=15

# The dashboard's test loads it in Debian's headless chromium; installed here when missing
# (as root, or with passwordless sudo). apt and dpkg need the sbin directories on PATH, which
# a narrow PATH (cron, CI, a minimal container) lacks. A failed install stops nothing here:
# the test then says what is missing (it fails as root in CI, and is skipped otherwise).
chromium:
	@command -v chromium >/dev/null || { \
	  export PATH="$$PATH:/usr/local/sbin:/usr/sbin:/sbin" DEBIAN_FRONTEND=noninteractive; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "chromium missing and no root: the dashboard test will be skipped"; exit 0; fi; \
	  echo "installing Debian's chromium for the dashboard test …"; \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null 2>&1 && \
	    $$SUDO apt-get install -y -q chromium >/dev/null 2>&1; } || \
	  echo "could not install chromium (apt-get failed): the dashboard test will say so"; }

bench: $(BIN)/poolfin
	$(BIN)/poolfin bench --payments 10000 --pools 100 --ceiling
	$(BIN)/poolfin bench --payments 10000 --pools 100 --rate 500
	$(BIN)/poolfin bench --payments 10000 --pools 100 --open-receivables 1000000

contracts: $(BIN)/poolfin
	$(BIN)/poolfin contracts export

clean:
	rm -rf $(VENV) .poolfin .pytest_cache .mypy_cache .ruff_cache .hypothesis
