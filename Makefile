# The two commands a newcomer types: `make run` and `make test`.
.PHONY: setup run test test-compose lint bench

setup:
	@bash ops/setup.sh

run: setup
	@bash ops/run_local.sh

test: setup
	@.venv/bin/python -m pytest

# Needs root: it may install and start a Docker engine (tests/compose/engine.sh).
test-compose: setup
	@bash tests/compose/engine.sh && .venv/bin/python -m pytest -m compose tests/compose

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy settings.py ingest retrieval llm appliance ui ops

bench: setup
	@.venv/bin/python -m ops.tools.bench_ingest && .venv/bin/python -m ops.tools.bench_query && .venv/bin/python -m ops.tools.bench_api
