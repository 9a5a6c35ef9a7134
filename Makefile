# paperwire: the everyday commands. Every target installs what it needs first (make install).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# The exported ONNX model is cached outside the work tree, so fresh clones reuse it. Another embedding model:
# make run PAPERWIRE_MODEL_ID=BAAI/bge-small-en-v1.5 MODEL_SOURCE=<its sentence-transformers directory>
export PAPERWIRE_MODEL_ID ?= sentence-transformers/all-MiniLM-L6-v2
export PAPERWIRE_MODEL_DIR ?= $(HOME)/.cache/paperwire/models/$(notdir $(PAPERWIRE_MODEL_ID))

.PHONY: install run demo test lint format up down model browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

model: install
	$(BIN)/paperwire model export $(if $(MODEL_SOURCE),--model-dir $(MODEL_SOURCE))

run: install model
	$(BIN)/paperwire run

demo: install
	$(BIN)/paperwire demo

# Debian's Chromium for the browser tests (installed when we are root and it is missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium missing and not root: browser tests will be skipped"; fi; }

test: install browser model
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make up PROFILE=gpu`: the embedder on the GPU (docker-compose.gpu.yml replaces the CPU one).
COMPOSE_FILES = -f docker-compose.yml $(if $(filter gpu,$(PROFILE)),-f docker-compose.gpu.yml)

up:
	docker compose $(COMPOSE_FILES) up --build -d

down:
	docker compose $(COMPOSE_FILES) down

clean:
	rm -rf $(VENV) data
