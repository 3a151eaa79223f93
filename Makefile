SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is keyed on the dependency spec: setup re-runs only when it changes.
SPEC_HASH := $(shell cat pyproject.toml scripts/install.sh | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(SPEC_HASH)
PACKAGES := hwloop device_models drivers calibration experiments

.PHONY: setup demo test test-slow lint format bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/hwloop pong demo

test: $(STAMP)
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(PACKAGES)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	start=$$(date +%s); for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done; \
	$(PY) benchmarks/summary.py --since $$start

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
