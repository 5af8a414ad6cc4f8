# c2m: two commands on a fresh machine, `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit lint install clean soak

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "c2m needs Python 3.11 or newer (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/c2m demo $(if $(DURATION),--duration $(DURATION))

lint: $(STAMP)
	$(BIN)/ruff check streams models tests examples

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test: lint
	$(BIN)/pytest -q -ra --durations=10

soak: $(STAMP)
	$(BIN)/c2m soak --out .c2m/soak.json

clean:
	rm -rf $(VENV) .c2m
