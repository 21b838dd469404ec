# The two commands: `make run` serves the bundled bot, `make test` runs lint and the test suite.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run train test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0, the CPU build pip finds on these machines (a plain `torch` pulls CUDA)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/bot run

train: install
	$(VENV)/bin/bot train

lint: install
	$(VENV)/bin/ruff check bot actions tests bench

test: install lint
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf models results .pytest_cache
