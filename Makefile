# Every target creates .venv when missing and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second venv: naq[dev] with the newest nats-py instead of the pinned one.
LATEST_VENV := .venv-nats-latest
LATEST_BIN := $(LATEST_VENV)/bin
LATEST_STAMP := $(LATEST_VENV)/.installed

.PHONY: demo test test-slow test-cluster fuzz test-nats-latest lint typecheck bench clean install docs

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/naq demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Tests that spend 10 s or more waiting by design (a server restart, a lease running out, a
# request timing out): kept out of `make test` to hold it under 10 minutes; CI runs them.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# Node loss on a 3-node JetStream cluster: long runs, kept out of `make test`.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -m cluster

# 100,000 and more hostile messages at the decoder and a live worker; then coverage-guided
# fuzzing of the decoder with atheris, where it installs (a wheel for this Python and CPU).
fuzz: $(STAMP)
	$(BIN)/python -m pytest -q -m fuzz
	$(BIN)/pip install atheris || echo "atheris not installable here: skipped"
	if $(BIN)/python -c "import atheris" 2>/dev/null; then $(BIN)/python tests/fuzz_atheris.py 100000; fi

$(LATEST_BIN)/python:
	$(PY) -m venv $(LATEST_VENV)
	echo '*' > $(LATEST_VENV)/.gitignore

$(LATEST_STAMP): $(LATEST_BIN)/python pyproject.toml
	$(LATEST_BIN)/python -m pip install -q --upgrade pip
	$(LATEST_BIN)/python -m pip install -q -e '.[dev]'
	touch $(LATEST_STAMP)

# The suite against the newest nats-py, past naq's pin, so a release that breaks naq is seen
# here before users see it. When that release is past the pin, pip prints a dependency conflict
# for naq (and still exits 0): expected here.
test-nats-latest: $(LATEST_STAMP)
	$(LATEST_BIN)/python -m pip install -q --upgrade --upgrade-strategy only-if-needed \
		'nats-py[nkeys]'
	$(LATEST_BIN)/python -c 'import importlib.metadata as m; print("testing with nats-py", m.version("nats-py"))'
	$(LATEST_BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy
	for example in examples/*/; do $(BIN)/mypy --strict "$$example" || exit 1; done

# The documentation site (mkdocs.yml, docs/), built into site/ with --strict: any warning
# (a broken link, a docstring mkdocstrings cannot read) fails the build.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

# (NO_MKDOCS_2_WARNING: without it, mkdocs prints a banner about its next major version)
docs: export NO_MKDOCS_2_WARNING := 1
docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) $(LATEST_VENV) build dist .pytest_cache .mypy_cache .ruff_cache
