# The two commands a newcomer types: `make run` and `make test`.
.PHONY: setup run test lint bench

setup:
	@bash ops/setup.sh

run: setup
	@bash ops/run_local.sh

test: setup
	@.venv/bin/python -m pytest

lint:
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy settings.py ingest retrieval llm appliance ui ops

bench: setup
	@.venv/bin/python -m ops.tools.bench_ingest && .venv/bin/python -m ops.tools.bench_query && .venv/bin/python -m ops.tools.bench_api
