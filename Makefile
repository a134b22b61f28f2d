# The gate CI runs (.ci/run calls `make check` after installing).
PYTHON ?= python

.PHONY: check lint typecheck test bench js-deps

check: lint typecheck test

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

typecheck:
	$(PYTHON) -m mypy

test: js-deps
	$(PYTHON) -m pytest -q

# The official Ollama JavaScript client, for tests/test_clients.py (Node.js and npm).
js-deps: tests/js/node_modules/.package-lock.json

tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund

bench:
	$(PYTHON) bench/bench_face.py
