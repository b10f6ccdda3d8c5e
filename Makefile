# Two commands on a fresh machine: `make demo` and `make test` (`make lint`, then the tests).
# Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint lock clean chromium

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/driftctl demo

# The linters first, then every test.
test: $(STAMP) lint chromium
	$(BIN)/python -m pytest -q

# ruff: lint and import order. mypy: strict on drift/ and training/, every function annotated
# elsewhere (a warm .mypy_cache makes it seconds). lint-imports: the layers in pyproject.toml.
# Alone it only needs a .venv (tools are pinned); `make test` refreshes it first.
lint: | $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The console's browser test drives Debian's chromium headless (Playwright never downloads a browser here).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null)

# Re-pin after changing dependencies: what was tested is what a fresh install gets.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^driftctl' > constraints.txt

clean:
	rm -rf $(VENV) .driftctl .mypy_cache .ruff_cache .import_linter_cache
