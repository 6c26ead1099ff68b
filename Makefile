# credit-registry — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup run test test-unit lint bench clean stop

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[embedded,dev]"
	@touch $(STAMP)

setup: $(STAMP) ## install everything missing: venv + pip, redis-server, Kafka jars, chromium, promtool
	infra/redis/redis.sh install
	infra/kafka/kafka.sh jars
	infra/chromium.sh install
	infra/prometheus/promtool.sh install

run: setup ## start Kafka, Redis, the worker (+API, dashboard) and a lender simulator; Ctrl-C stops all
	$(PY) -m streams.cli.local_stack

test: setup ## the whole test suite against real services started by the suite
	@$(PY) -m pytest -q -p no:cacheprovider; status=$$?; \
	  if [ $$status -eq 5 ]; then echo "no tests were collected: failing" >&2; exit 1; fi; \
	  exit $$status

test-unit: $(STAMP) ## fast tests without services
	$(PY) -m pytest -q tests/unit

lint: $(STAMP) ## ruff, the import contracts (lint-imports), then the type check (mypy) of pyproject.toml
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

bench: setup ## benchmark suite on the local stack -> bench/results/<ts>.{json,md} (BENCH_ARGS=--quick)
	$(PY) -m pip install -q -e ".[embedded,dev,bench]"
	@# wrk (Debian package) drives the risk API over HTTP in the query-latency part
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	@# Quix Streams (peer benchmark) caps pydantic/pydantic-settings below our pins: own venv;
	@# the full peer also needs Redis and ClickHouse (embedded chDB) clients, at our pins
	@test -x $(VENV)/bench-quix/bin/python || $(PYTHON) -m venv $(VENV)/bench-quix
	$(VENV)/bench-quix/bin/python -m pip install -q "quixstreams==3.28.1" "fastavro==1.13.1" \
	  "redis[hiredis]==8.1.0" "clickhouse-connect==1.12.0" "chdb==4.4.0"
	$(PY) -m bench.run $(BENCH_ARGS)

clean: ## remove local data (not the venv, not the Kafka jar cache)
	rm -rf .registry-data tests/artifacts
