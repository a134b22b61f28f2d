# The gate CI runs (.ci/run calls `make check` after installing).
PYTHON ?= python

.PHONY: check lint typecheck test bench

check: lint typecheck test

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) bench/bench_face.py
