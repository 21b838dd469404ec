# The two commands: `make run` serves the bundled bot, `make test` runs lint and the test suite.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run train test lint bench clean browser axe nginx

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

# the browser tests drive the system Chromium (Playwright's own download does not work offline)
browser:
	dpkg -s chromium fonts-wqy-microhei >/dev/null 2>&1 || \
		(apt-get update -q && apt-get install -y -q chromium fonts-wqy-microhei)

# nginx for tests/test_deploy_nginx.py and the load benchmark, which run deploy/nginx/bankbot.conf in nginx processes
# of their own (own port, prefix, pid and temp paths: bench/nginx_proxy.py); a system nginx, if apt starts one,
# is not used
nginx:
	dpkg -s nginx-light >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q nginx-light)

# axe-core, the accessibility checker the browser tests inject into pages: fetched at build time, never at run time
# (tests/test_accessibility.py reads .bot/axe/node_modules/axe-core/axe.min.js; a new version here reinstalls)
AXE_VERSION := 4.14.1
AXE_STAMP := .bot/axe/installed-$(AXE_VERSION)

$(AXE_STAMP):
	npm install --prefix .bot/axe --no-save --no-audit --no-fund --loglevel=error axe-core@$(AXE_VERSION)
	test -s .bot/axe/node_modules/axe-core/axe.min.js
	touch $@

axe: $(AXE_STAMP)

test: install lint browser axe nginx
	$(PY) -m pytest -q

bench: install
	$(PY) bench/run.py

clean:
	rm -rf models results .pytest_cache
