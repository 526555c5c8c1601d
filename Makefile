# Two commands on a fresh machine:  make serve   and   make test
PYTHON ?= python3
VENV   ?= .venv
SHARED ?= ../shared
HOST   ?= 0.0.0.0
PORT   ?= 8000
BIN     = $(VENV)/bin

.PHONY: install models calibration serve test test-container lint docs config-docs format lock clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[tf,training,ray,dev,taxonomy]'
	touch $@

install: $(BIN)/.installed

# Real models from ../shared/models when it is there (offline), else the official downloads.
models:
	@if [ -d "$(SHARED)/models" ]; then ./download_volume.sh --from "$(SHARED)/models"; \
	else ./download_volume.sh; fi

# The shipped calibrations (volumes/models/calibration/*.json, tracked): refit from ../shared.
CALIBRATION_SETS = volumes/tmp/calibration
calibration: install models
	$(BIN)/python -m tests.support.datasets $(CALIBRATION_SETS) $(SHARED)
	$(BIN)/python -m app calibrate $(CALIBRATION_SETS)/birds.csv --model aiy_birds_v1 --no-progress \
	  --fitted-on "../shared: datasets/mixed birds (55) + samples (2), species the model has"
	$(BIN)/python -m app calibrate $(CALIBRATION_SETS)/insects.csv --model aiy_insects_v1 --no-progress \
	  --fitted-on "../shared: datasets/leedsbutterfly (300) + mixed (1) + samples (1), species the model has"

# A first run also builds a default species index for /img_url when volumes/index has none: the
# Leeds butterflies of ../shared with the offline embedder (no download; ~15 s). Without those
# photos it serves anyway and says how to build one (log and /health/ready).
PHOTOS ?= $(SHARED)/datasets/leedsbutterfly
serve: install models
	SERVER_HOST=$(HOST) SERVER_PORT=$(PORT) $(BIN)/python -m app serve --default-index auto --photos "$(PHOTOS)"

test: install
	$(BIN)/python -m pytest

# Builds and runs the Docker image with rootful podman (tests/container/setup_podman.sh prepares it).
test-container: install
	$(BIN)/python -m pytest -m container tests/container

lint: install
	$(BIN)/ruff check app tests benchmarks notebooks
	$(BIN)/ruff format --check app tests benchmarks notebooks
	$(BIN)/mypy app
	$(BIN)/lint-imports  # the layer contract in pyproject.toml: imports run downwards
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir volumes/tmp/site  # docs/: a broken link or anchor fails

# The documentation (docs/, mkdocs.yml), served on DOCS_PORT beside `make serve` on PORT. The lint
# build above goes to a git-ignored folder; never give it --quiet, which hides the warnings --strict counts.
DOCS_PORT ?= 8001
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

format: install
	$(BIN)/ruff format app tests benchmarks notebooks
	$(BIN)/ruff check --fix app tests benchmarks notebooks

# docs/configuration.md is generated from app/settings.py (tests/test_settings_reference.py fails
# when it is out of date).
config-docs: install
	$(BIN)/python -m app.settings_reference > docs/configuration.md

# The Docker image installs exactly these versions: lite (LiteRT only, the default image) and
# tf (adds TensorFlow + TF-Hub for SavedModel models such as the iNat embedder).
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 -q
lock: install
	$(UV_COMPILE) -o requirements/lite.lock
	$(UV_COMPILE) --extra tf -o requirements/tf.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
