# The README's two commands: `make demo` (the main job, on bundled defaults) and `make test` (the suite,
# also what CI runs through .ci/run). Both create .venv and install the zoo into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.zoo-installed

.PHONY: demo test

demo: $(STAMP)
	$(BIN)/zoo list
	$(BIN)/zoo info resnet8_small
	$(BIN)/zoo summary resnet8_small --input 1x28x28
	$(BIN)/zoo predict resnet8_small.mnist recipes/samples/*.png --topk 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q -n auto

# torch is pinned to the build this machine serves from disk; real users get the ranges in pyproject.toml.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)
