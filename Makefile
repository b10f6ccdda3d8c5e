# Two commands on a fresh machine: `make demo` and `make test` (`make lint`, then the tests).
# Both install into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint lock clean chromium postgresql

# setup.py and the .pyx: a changed compiled module is built again (a stale one would shadow the edit).
$(STAMP): pyproject.toml constraints.txt setup.py training/_leaf.pyx
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/driftctl demo

# The linters first, then every test.
test: $(STAMP) lint chromium postgresql
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

# The PostgreSQL test uses the server at DRIFTCTL_TEST_POSTGRES_URL (default 127.0.0.1:5432) if
# one answers, else starts a throwaway one from Debian's binaries: installed here when missing.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		($(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql >/dev/null)

# Re-pin after changing dependencies: what was tested is what a fresh install gets.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^driftctl' > constraints.txt

clean:
	rm -rf $(VENV) .driftctl .mypy_cache .ruff_cache .import_linter_cache
