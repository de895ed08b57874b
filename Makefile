# reco: make help lists every target.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RECO_HOME ?= $(CURDIR)/.reco

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F ':.*?## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv/ and install reco with its dev tools (pinned by constraints.txt)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

browser: ## Install Debian's headless Chromium for the email-in-a-browser test (uses apt-get; root or sudo)
	@command -v chromium >/dev/null 2>&1 && echo "chromium: $$(command -v chromium)" || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: install ## Run the whole loop on embedded defaults (no Redis or MLflow server needed)
	$(BIN)/reco demo

test: install ## Run the test suite (Redis tests use 127.0.0.1:6379 DB 15; CI=true makes them mandatory)
	$(BIN)/pytest

lint: install ## ruff + mypy
	$(BIN)/ruff check training service experiments tests
	$(BIN)/ruff format --check training service experiments tests
	$(BIN)/mypy training service

bench: install ## Benchmarks with big data (minutes): generator at 1M customers, ...
	$(BIN)/python experiments/bench_generate.py

clean: ## Remove generated state (.reco/) and caches, keep .venv/
	rm -rf .reco .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install browser demo test lint bench clean
