# Lookalike — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Two installs: serving (pyproject's dependencies: no torch) for the demo, the indexer and the image, and
# full (plus the train and dev extras) for training, reports, benchmarks against torch and the tests.
# The full stamp implies the serving one: a clean clone's `make test` installs everything in one go.
SERVE_INSTALLED := $(VENV)/.installed-serve
INSTALLED := $(VENV)/.installed
VAR := var
PORT ?= 3000

# Everything the demo and tests write stays inside the checkout.
export BENTOML_HOME ?= $(CURDIR)/$(VAR)/bentoml
export BENTOML_DO_NOT_TRACK := True
export LOOKALIKE_CLOTHING_DIR ?= $(abspath ../shared/data/clothing)
CLOTHING_URL := https://github.com/alexeygrigorev/clothing-dataset-small
EMBEDDER := $(VAR)/.embedder
DETECTOR_MODEL := $(VAR)/.detector
# The trained embedder the repository ships (ONNX + metadata); `make train-gpu` remakes it,
# `make train` makes the CPU recipe's (frozen trunk, < 30 min on 2 cores).
ARTIFACT := training/artifacts/embedder
TRAIN_RUN := $(VAR)/train/embedder
TRAIN_ARGS :=
# The whole backbone fine-tuned on 16 cached views per photo: ~4 min on one H200 with 16 cores.
GPU_TRAIN_ARGS := --train-trunk --crop-views 8 --photo-views 4 --recolour-views 4 --epochs 45 --workers 16 --threads 6
REPORT := training/reports/embedder
# Query families as served, the class-held-out row and the catalogue-size curve (training.embedder.robustness).
ROBUSTNESS_REPORT := training/reports/robustness
# The CPU recipe trained without two classes: `make train-heldout` remakes it.
HELDOUT := training/artifacts/embedder-heldout
HELDOUT_CLASSES := outwear,shorts
DETECTOR := training/artifacts/detector
DETECTOR_REPORT := training/reports/detector
PREVIOUS := $(VAR)/previous
CATALOG := $(VAR)/.demo-catalog

.DEFAULT_GOAL := help
.PHONY: help install install-full container bench-engines bench-indexer browser model train train-gpu finetune detail train-heldout train-detector train-detector-gpu report report-detector demo-catalog demo test test-fast bench loadtest loadtest-smoke loadtest-soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(SERVE_INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $@

$(INSTALLED): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[train,dev]'
	@touch $(SERVE_INSTALLED) $@

install: $(SERVE_INSTALLED)  ## create .venv with what serving needs (no torch; only when pyproject.toml changed)

install-full: $(INSTALLED)  ## the same plus the train and dev extras (torch, pytest, locust...)

# Importing a shipped model needs the serving install only; exporting a provisional one needs torch.
$(EMBEDDER): $(SERVE_INSTALLED) $(if $(wildcard $(ARTIFACT).onnx),,$(INSTALLED)) $(wildcard $(ARTIFACT).onnx $(ARTIFACT).json)
	@if [ -f $(ARTIFACT).onnx ]; then $(BIN)/python -m lookalike.modelstore import $(ARTIFACT); \
	else echo "no shipped embedder: exporting the provisional one"; $(BIN)/python -m training.embedder.export --provisional; fi
	@mkdir -p $(VAR) && touch $@

# The shipped detector; without it the provisional one (finds nothing: photos are searched whole).
$(DETECTOR_MODEL): $(SERVE_INSTALLED) $(if $(wildcard $(DETECTOR).onnx),,$(INSTALLED)) $(wildcard $(DETECTOR).onnx $(DETECTOR).json)
	@if [ -f $(DETECTOR).onnx ]; then $(BIN)/python -m lookalike.modelstore import $(DETECTOR); \
	else echo "no shipped detector: exporting the provisional one"; $(BIN)/python -m training.detector.export --provisional; fi
	@mkdir -p $(VAR) && touch $@

model: $(EMBEDDER) $(DETECTOR_MODEL)  ## put the shipped embedder and detector into the BentoML model store

train-gpu: TRAIN_RUN := $(VAR)/train/embedder-gpu
train-gpu: TRAIN_ARGS := $(GPU_TRAIN_ARGS)
train-gpu: train  ## the same on a GPU, end to end: the recipe of the shipped embedder

train: $(INSTALLED)  ## train the embedders on the CPU, evaluate, export and ship them (training/artifacts)
	$(BIN)/python -m training.embedder.train --out $(TRAIN_RUN) $(TRAIN_ARGS)
	$(BIN)/python -m training.embedder.export --checkpoint $(TRAIN_RUN)/checkpoint.pth --name lookalike-embedder-candidate
	$(BIN)/python -m training.embedder.evaluate --model lookalike-embedder-candidate:latest --out $(REPORT)
	$(BIN)/python -m training.embedder.export --checkpoint $(TRAIN_RUN)/checkpoint.pth --metrics $(REPORT)/metrics.json --ship $(ARTIFACT)
	$(MAKE) detail

# The shipped embedder: the GPU model (shipped at GPU_MODEL, git history) fine-tuned on the CPU, its
# trunk frozen, with close-up (partial) and hard-photo views besides the usual ones (~35 min here).
GPU_MODEL := f4e0d1b
FINETUNE_RUN := $(VAR)/train/finetune
finetune: $(INSTALLED)  ## fine-tune the GPU model (git history) on the CPU with partial and hard views, evaluate, ship
	@mkdir -p $(VAR) && git show $(GPU_MODEL):$(ARTIFACT).onnx > $(VAR)/gpu-embedder.onnx && \
	  git show $(GPU_MODEL):$(ARTIFACT).json > $(VAR)/gpu-embedder.json
	$(BIN)/python -m training.embedder.train --out $(FINETUNE_RUN) --init-onnx $(VAR)/gpu-embedder.onnx \
	  --partial-views 1 --hard-views 1 --lr 6e-4 --top-lr 1e-4 --epochs 12
	$(BIN)/python -m training.embedder.export --checkpoint $(FINETUNE_RUN)/checkpoint.pth --name lookalike-embedder-candidate
	$(BIN)/python -m training.embedder.evaluate --model lookalike-embedder-candidate:latest --out $(REPORT)
	$(BIN)/python -m training.embedder.export --checkpoint $(FINETUNE_RUN)/checkpoint.pth --metrics $(REPORT)/metrics.json --ship $(ARTIFACT)
	$(MAKE) detail

# The detail head: GeM of the shipped embedder's head conv, whitened on the train photos as the
# catalogue crops them (`training.embedder.detail`); fitting again replaces the one it has.
detail: $(INSTALLED)  ## fit the shipped embedder's detail vector (same-item search) and ship the graph with it
	$(BIN)/python -m training.embedder.detail --onnx $(ARTIFACT).onnx --out $(VAR)/detail/embedder.onnx
	cp $(VAR)/detail/embedder.onnx $(ARTIFACT).onnx && cp $(VAR)/detail/embedder.json $(ARTIFACT).json

# The class-held-out run: the CPU recipe with HELDOUT_CLASSES left out of training entirely.
train-heldout: $(INSTALLED)  ## train the CPU recipe without two classes (the report's class-held-out row)
	$(BIN)/python -m training.embedder.train --out $(VAR)/train/embedder-heldout --exclude-classes $(HELDOUT_CLASSES)
	$(BIN)/python -m training.embedder.export --checkpoint $(VAR)/train/embedder-heldout/checkpoint.pth \
	  --name lookalike-embedder-heldout --ship $(HELDOUT)

DETECTOR_RUN := $(VAR)/train/detector
DETECTOR_TRAIN_ARGS :=
# More scenes and epochs on a GPU; the frozen trunk's cache stays in RAM (not yet run: no GPU was lent).
train-detector-gpu: DETECTOR_RUN := $(VAR)/train/detector-gpu
train-detector-gpu: DETECTOR_TRAIN_ARGS := --train-scenes 20000 --epochs 24 --batch-size 64 --lr 4e-3 --workers 16 --threads 8
train-detector-gpu: train-detector  ## the same on a GPU with more scenes and epochs
train-detector: $(INSTALLED)  ## compose scenes, train the detector on the CPU, evaluate, export and ship it
	$(BIN)/python -m training.detector.train --out $(DETECTOR_RUN) $(DETECTOR_TRAIN_ARGS)
	$(BIN)/python -m training.detector.evaluate --checkpoint $(DETECTOR_RUN)/checkpoint.pth --out $(DETECTOR_REPORT)
	$(BIN)/python -m training.detector.export --checkpoint $(DETECTOR_RUN)/checkpoint.pth \
	  --metrics $(DETECTOR_REPORT)/metrics.json --ship $(DETECTOR)

# The previous model is the shipped pair as of the last commit before the one that shipped this one.
report: $(INSTALLED)  ## the shipped embedder by query family (worst first), class-held-out, catalogue size; and against the one before
	@rm -rf $(PREVIOUS) && mkdir -p $(PREVIOUS)
	@commit=$$(git log -n 1 --skip 1 --format=%h -- $(ARTIFACT).onnx 2>/dev/null); compare=; \
	if [ -n "$$commit" ] && git show $$commit:$(ARTIFACT).onnx > $(PREVIOUS)/embedder-$$commit.onnx && \
	  git show $$commit:$(ARTIFACT).json > $(PREVIOUS)/embedder-$$commit.json; then \
	  compare="--compare $(PREVIOUS)/embedder-$$commit.onnx"; \
	else echo "no earlier shipped embedder in git history: the report compares with nothing"; fi; \
	set -x; $(BIN)/python -m training.embedder.robustness --onnx $(ARTIFACT).onnx $${compare:+--compare $(PREVIOUS)/embedder-$$commit.onnx} \
	  $$([ -f $(HELDOUT).onnx ] && echo --heldout $(HELDOUT).onnx --heldout-classes $(HELDOUT_CLASSES)) --out $(ROBUSTNESS_REPORT) && \
	$(BIN)/python -m training.embedder.evaluate --onnx $(ARTIFACT).onnx $$compare --out $(REPORT)

# The same for the detector: the shipped pair against the one shipped before it, found by the shipped embedder.
report-detector: $(INSTALLED)  ## evaluate the shipped detector against the one shipped before it (from git history)
	@mkdir -p $(PREVIOUS) && rm -f $(PREVIOUS)/detector-*
	@commit=$$(git log -n 1 --skip 1 --format=%h -- $(DETECTOR).onnx 2>/dev/null); compare=; \
	if [ -n "$$commit" ] && git show $$commit:$(DETECTOR).onnx > $(PREVIOUS)/detector-$$commit.onnx && \
	  git show $$commit:$(DETECTOR).json > $(PREVIOUS)/detector-$$commit.json; then \
	  compare="--compare $(PREVIOUS)/detector-$$commit.onnx"; \
	else echo "no earlier shipped detector in git history: the report compares with nothing"; fi; \
	set -x; $(BIN)/python -m training.detector.evaluate --onnx $(DETECTOR).onnx $$compare \
	  --embedder $(ARTIFACT).onnx --out $(DETECTOR_REPORT)

$(CATALOG): $(EMBEDDER) $(DETECTOR_MODEL)
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
	@# A new embedder may make other vectors than the demo store holds: the demo's store is rebuilt.
	rm -rf $(VAR)/store
	set -a && source $(VAR)/demo.env && set +a && \
	  $(BIN)/python -m indexer folder "$$LOOKALIKE_CLOTHING_DIR/train" --shop demo --mapping indexer/mappings/clothing.txt
	@touch $@

demo-catalog: $(CATALOG)  ## index the demo catalogue into the embedded store

demo: $(CATALOG)  ## install serving only (no torch), import the models, index, serve on http://127.0.0.1:3000 (PORT=...)
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

bench: $(SERVE_INSTALLED)  ## vector-store benchmark at 100K points (upsert rate, p50/p99, recall@10)
	$(BIN)/python -m loadtests.bench_store --points 100000

bench-indexer: $(SERVE_INSTALLED)  ## the indexer end to end: 1,000 images over HTTP (50 ms each), then the unchanged re-run
	$(BIN)/python -m loadtests.bench_indexer --out $(VAR)/reports/indexer

bench-engines: $(INSTALLED)  ## inference engines per model and batch size against torch eager (table + Markdown)
	$(BIN)/python -m loadtests.bench_engines

# The capacity run (loadtests/capacity.py) starts and stops the service itself on the demo store: stop
# `make demo` first (the embedded store is one process). Locust CSV/HTML in var/loadtest, the report
# (Markdown, PNG) in loadtests/reports/capacity. `timeout` is the promised end; SIGTERM stops what it started.
CAPACITY := $(BIN)/python -m loadtests.capacity --port $(PORT)
loadtest: $(INSTALLED) $(CATALOG)  ## capacity run: engines, step load batching on/off, overload; report (~4 min, ends by 8 min)
	timeout 480 $(CAPACITY)

loadtest-smoke: $(INSTALLED) $(CATALOG)  ## the same, one arm, two short steps, no overload (ends by 2 min, ~60 s)
	timeout 120 $(CAPACITY) --arms on --max-steps 2 --step-s 6 --bench-s 0.5 --no-overload \
	  --out $(VAR)/loadtest/smoke-report --work $(VAR)/loadtest/smoke

SOAK_S ?= 600
loadtest-soak: $(INSTALLED) $(CATALOG)  ## 10 users for SOAK_S (600) s: is each process's memory flat? (soak.md)
	timeout $$(( $(SOAK_S) + 120 )) $(CAPACITY) --soak-s $(SOAK_S)

# The CPU image with buildah (no Docker daemon needed); it says how far it got and what would finish it.
container: $(EMBEDDER) $(DETECTOR_MODEL)  ## build the CPU bento and its image with buildah (scripts/container.sh)
	BIN=$(BIN) bash scripts/container.sh

clean:  ## remove the model store, the demo store and stamps (keeps .venv)
	rm -rf $(VAR)
