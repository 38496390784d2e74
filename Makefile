# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

# `make lint`: ruff over everything (tests, bench and the example plugin too), mypy over
# the product's packages. CI runs it (.ci/run).
LINT_PATHS ?= chatbot adapters tasks scrapli_netbot

.PHONY: demo test lab bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip uninstall --quiet --yes netchatops 2>/dev/null || true  # the distribution's old name
	$(VENV)/bin/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/chatbot shell --lab

test: $(STAMP)
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS) bench tests examples
	$(VENV)/bin/mypy $(LINT_PATHS)

lab: $(STAMP)
	$(VENV)/bin/chatbot lab

# Benchmarks print figures (see bench/README.md); the fan-out one takes minutes.
bench: $(STAMP)
	$(VENV)/bin/python bench/core_overhead.py --iterations 1000
	$(VENV)/bin/python bench/monitor_sweep.py
	$(VENV)/bin/python bench/fanout.py --devices 50 200
	$(VENV)/bin/python bench/matrix_roundtrip.py --rounds 30

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
