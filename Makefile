# Two entry points, both self-installing: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BOT ?= bots/tutor.yaml

.PHONY: serve test lint install

$(BIN)/botrunner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/botrunner

serve: $(BIN)/botrunner
	$(BIN)/botrunner serve $(BOT)

test: $(BIN)/botrunner
	$(BIN)/python -m pytest -n auto -q

lint: $(BIN)/botrunner
	$(BIN)/ruff format --check botrunner tests bench
	$(BIN)/ruff check botrunner tests bench
