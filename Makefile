# Everything runs inside a local virtual environment (.venv), installed with exact pins from
# constraints.txt so that a fresh machine never resolves a multi-GB CUDA build of torch.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-fast notebooks lint format bench constraints clean help

help:
	@echo "make demo     install, then run the default search on the embedded defaults"
	@echo "make test     install, then run the whole test suite (what .ci/run runs)"
	@echo "make lint     ruff check + format check"
	@echo "make bench    run the benchmarks under experiments/"

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[all]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m nas.search +space=yolo_nas

test: install lint
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not gpu" tests
	$(MAKE) --no-print-directory notebooks

test-fast: install
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not gpu and not slow and not postgres" tests

notebooks: install
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then $(PY) -m pytest -q --nbmake notebooks; fi

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

bench: install
	$(PY) experiments/model_speed/run.py

constraints: install
	@echo "regenerate constraints.txt from the current venv"
	$(PY) -m pip freeze --exclude-editable | grep -v '^yolo-nas-search' > constraints.body
	{ head -4 constraints.txt; cat constraints.body; } > constraints.new && mv constraints.new constraints.txt && rm constraints.body

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
