# The two quick-start commands are `make run` and `make test`; each builds .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test test-all bench bench-long reproduce lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/lstmjax run configs/quickstart.yaml --resume

# one pytest-xdist worker per core, at most 4 (the suite is mostly single-threaded XLA compiles);
# `make test TEST_WORKERS=0` runs it in one process
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP_TEST)
	$(BIN)/python -m pytest -q $(XDIST)

test-all: $(STAMP_TEST)
	$(BIN)/python -m pytest -q -m "" $(XDIST)

bench: $(STAMP_TEST)
	$(BIN)/python -m benchmarks.run

# opt-in (tens of minutes): train step and peak RSS at T = 1k..100k, with and without remat
bench-long: $(STAMP_TEST)
	$(BIN)/python -m benchmarks.run --long

# one published finding end to end (~10-25 min on 2 CPU cores): make reproduce EXP=gap_scaling
# trains runs/$(EXP) (resumable), then rewrites the measured part of experiments/$(EXP)/RESULTS.md
reproduce: $(STAMP_RUN)
	@test -n "$(EXP)" || { echo "usage: make reproduce EXP=<name>  (one of: $$(ls experiments/*/config.yaml | cut -d/ -f2 | tr '\n' ' '))"; exit 2; }
	$(BIN)/python experiments/reproduce.py $(EXP)

lint: $(STAMP_TEST)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache
