# Lookalike — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
VAR := var
PORT ?= 3000

# Everything the demo and tests write stays inside the checkout.
export BENTOML_HOME ?= $(CURDIR)/$(VAR)/bentoml
export BENTOML_DO_NOT_TRACK := True
export LOOKALIKE_CLOTHING_DIR ?= $(abspath ../shared/data/clothing)
CLOTHING_URL := https://github.com/alexeygrigorev/clothing-dataset-small
EMBEDDER := $(VAR)/.embedder-provisional
CATALOG := $(VAR)/.demo-catalog

.DEFAULT_GOAL := help
.PHONY: help install browser model demo-catalog demo test test-fast bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[train,dev]'
	@touch $@

install: $(INSTALLED)  ## create .venv and install (only when pyproject.toml changed)

$(EMBEDDER): $(INSTALLED) training/backbone.py training/model.py training/export.py
	$(BIN)/python -m training.export --provisional
	@mkdir -p $(VAR) && touch $@

model: $(EMBEDDER)  ## export the embedder to ONNX into the BentoML model store

$(CATALOG): $(EMBEDDER)
	@mkdir -p $(VAR)
	@if [ ! -d "$$LOOKALIKE_CLOTHING_DIR/train" ]; then \
	  echo "no photos at $$LOOKALIKE_CLOTHING_DIR; trying to clone $(CLOTHING_URL)"; \
	  if timeout 120 git clone -q --depth 1 $(CLOTHING_URL) $(VAR)/clothing; then \
	    echo "LOOKALIKE_CLOTHING_DIR=$(CURDIR)/$(VAR)/clothing" > $(VAR)/demo.env; \
	  else \
	    echo "clone failed: generating a synthetic catalogue"; \
	    $(BIN)/python -m lookalike.synthetic $(VAR)/synthetic --per-class 40; \
	    echo "LOOKALIKE_CLOTHING_DIR=$(CURDIR)/$(VAR)/synthetic" > $(VAR)/demo.env; \
	  fi; \
	else echo "LOOKALIKE_CLOTHING_DIR=$$LOOKALIKE_CLOTHING_DIR" > $(VAR)/demo.env; fi
	set -a && source $(VAR)/demo.env && set +a && \
	  $(BIN)/python -m indexer folder "$$LOOKALIKE_CLOTHING_DIR/train" --shop demo --mapping indexer/mappings/clothing.txt
	@touch $@

demo-catalog: $(CATALOG)  ## index the demo catalogue into the embedded store

demo: $(CATALOG)  ## install, build, index and serve the API and page on http://127.0.0.1:3000 (PORT=...)
	set -a && source $(VAR)/demo.env && set +a && \
	  LOOKALIKE_CATALOG_IMAGES_DIR="$$LOOKALIKE_CLOTHING_DIR/train" $(BIN)/bentoml serve --host 127.0.0.1 --port $(PORT)

# The page test drives Debian's Chromium; without it (not root, no apt) that test skips and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no Chromium: the browser test will skip"

test: $(INSTALLED) browser  ## run the whole test suite (pytest's "no tests ran" counts as success)
	$(BIN)/python -m pytest; status=$$?; if [ $$status -eq 5 ]; then exit 0; else exit $$status; fi

test-fast: $(INSTALLED)  ## run the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

bench: $(INSTALLED)  ## vector-store benchmark at 100K points (upsert rate, p50/p99, recall@10)
	$(BIN)/python -m loadtests.bench_store --points 100000

clean:  ## remove the model store, the demo store and stamps (keeps .venv)
	rm -rf $(VAR)
