# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test unit bench soak clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/srdb demo

test: $(STAMP)
	$(BIN)/ruff check producer worker reaper shared tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q -m "not e2e"

bench: $(STAMP)
	$(BIN)/python -m bench

SOAK_SECONDS ?= 120
soak: $(STAMP)
	$(BIN)/python -m bench.soak --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .srdb .pytest_cache .mypy_cache .ruff_cache *.egg-info
