# Fresh-machine entry points: each target creates .venv and installs what it needs.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint clean-runs

$(PYTHON):
	python3 -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(PYTHON)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[dev,mert,muq,serve,database]'
	touch $@

install: $(INSTALLED)

# Trains the ECAPA embedder on procedural music and prints top-1 per bucket (untrained vs trained).
demo: $(INSTALLED)
	$(PYTHON) -m acr fit --config configs/synthetic.yaml

test: $(INSTALLED)
	$(PYTHON) -m pytest -q

lint: $(INSTALLED)
	$(PYTHON) -m ruff check acr tests experiments

clean-runs:
	rm -rf runs/synthetic
