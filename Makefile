# One entry point for newcomers and CI: `make demo` paints a first picture, `make test` builds the
# venv and runs every check.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test lint demo clean

# torch first, pinned (the CUDA wheels PyPI serves on Linux: ~5.6 GB in .venv), then Orsay.
$(BIN)/orsay: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/orsay

lint: venv
	$(BIN)/ruff check engine bot orsay tests bench scripts
	$(BIN)/ruff format --check engine bot orsay tests bench scripts
	$(BIN)/mypy

# pytest's exit code is make's: any failure fails `make test`. The last lines say how many tests
# were skipped and why (tests/conftest.py); .ci/run sets ORSAY_REQUIRE_REDIS=1 so Redis tests
# fail there instead of skipping.
test: lint
	$(BIN)/pytest -q

# The bundled photo and painting (engine/demo/); the weights are the best available, see
# `orsay demo --help`. ORSAY_SHARED, when set, says where the shared data folder is.
demo: venv
	$(BIN)/orsay demo $(if $(ORSAY_SHARED),--shared "$(ORSAY_SHARED)") -o out/demo.jpg

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
