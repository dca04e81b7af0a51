# One entry point for newcomers and CI: `make demo` paints a first picture, `make test` builds the
# venv and runs every check.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.txt
UV ?= uv
LOCK_FLAGS := --universal --generate-hashes --python-version 3.11 --custom-compile-command "make lock"

.PHONY: venv test lint demo clean lock

# Every package from the lock, each pinned with its sha256, so a venv built today is the one CI
# tested (torch and torchvision are PyPI's CUDA builds on Linux: ~5.6 GB in .venv); then Orsay
# itself, editable, with nothing the lock does not name. `pip check` fails a lock that does not
# satisfy pyproject.toml's dependencies (edit one, run `make lock`).
$(BIN)/orsay: pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

venv: $(BIN)/orsay

lint: venv
	$(BIN)/ruff check engine bot orsay tests bench scripts
	$(BIN)/ruff format --check engine bot orsay tests bench scripts
	$(BIN)/mypy

# pytest's exit code is make's: any failure fails `make test`. The last lines say how many tests
# were skipped and why (tests/conftest.py); .ci/run sets ORSAY_REQUIRE_REDIS=1 and
# ORSAY_REQUIRE_TRAINED_WEIGHTS=1 so those tests fail there instead of skipping.
test: lint
	$(BIN)/pytest -q

# The bundled photo and painting (engine/demo/); the weights are the best available, see
# `orsay demo --help`.
demo: venv
	$(BIN)/orsay demo -o out/demo.jpg

# Re-resolve the locks from pyproject.toml ([tool.uv] pins torch) with uv (`pip install uv`):
# requirements/dev.txt for `make` and CI, requirements/runtime.txt for the Docker image, the
# same versions in both. Existing pins are kept unless pyproject.toml asks otherwise.
lock:
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements/dev.txt
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -c requirements/dev.txt \
		-o requirements/runtime.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
