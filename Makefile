# One entry point for newcomers and CI: `make test` builds the venv and runs every check.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test lint demo clean

$(BIN)/orsay: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/orsay

lint: venv
	$(BIN)/ruff check engine bot tests bench scripts
	$(BIN)/ruff format --check engine bot tests bench scripts
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

demo: venv
	$(BIN)/orsay stylize ../shared/photos/chelsea-the-cat.png --style van-gogh-starry-night \
		--gallery-dir ../shared/artworks --weights random --size 128 -o out/demo.jpg

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
