# The two commands of the quick start: `make run` and `make test`. Each sets up what it needs
# on a fresh Debian machine: a venv with the package and its test tools, and Debian's gearmand
# (gearman-job-server) plus the C client (gearman-tools), and gcc with Python's headers for the
# job path's optional C extension, when they are missing.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
CONFIG ?= etc/gearmgr.yaml
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: setup venv gearmand run test lint format bench docs clean

# gearmand first: it installs gcc and Python's headers when missing, before pip builds the
# optional C extension of the job path (gearmgr/_speedups.c; without them gearmgr runs pure Python).
setup: gearmand venv

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py pyproject.toml requirements-dev.txt gearmgr/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . -r requirements-dev.txt
	touch $@

# `make test` adds what the tests of the docs' examples run (tests/test_docs_examples.py): PHP
# with pecl gearman, and Perl's Gearman::Client; iproute2, whose `ip` builds the network
# namespaces of the multi-host test (tests/test_multihost.py); and tmux and promtool
# (TEST_TOOLS, below). One apt-get update, only when something is missing.
APT_PACKAGES = gearman-job-server gearman-tools gcc python3-dev
HAVE_PYTHON_H = $(PYTHON) -c 'import os, sys, sysconfig; \
	sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'
gearmand:
	@if ! command -v gearmand >/dev/null || ! command -v gearman >/dev/null \
		|| ! command -v gcc >/dev/null || ! $(HAVE_PYTHON_H) \
		|| { [ -n "$(DOC_TEST_PACKAGES)" ] && ! command -v ip >/dev/null; } \
		|| { [ -n "$(TEST_TOOLS)" ] && ! { command -v tmux && command -v promtool; } >/dev/null; } \
		|| { [ -n "$(DOC_TEST_PACKAGES)" ] && ! { php -r 'exit(extension_loaded("gearman") ? 0 : 1);' \
			&& perl -MGearman::Client -e1; } >/dev/null 2>&1; }; then \
		echo "installing $(APT_PACKAGES) $(DOC_TEST_PACKAGES) $(TEST_TOOLS) with apt-get"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(APT_PACKAGES) $(DOC_TEST_PACKAGES) $(TEST_TOOLS); \
	fi

# `make run` follows the config it runs (CONFIG=, default etc/gearmgr.yaml): its servers and
# embedded_server. PORT=N runs it on 127.0.0.1:N instead. A config that embeds its own gearmand
# where another one already answers (on Debian with systemd, installing gearman-job-server starts
# its service on 4730) is refused with what to do, unless EXTERNAL=1 says to use that one.
run: setup
	@exec $(PY) -m gearmgr.cli.quickstart -c $(CONFIG) $(if $(PORT),--port $(PORT)) \
		$(if $(filter-out 0,$(EXTERNAL)),--external) $(if $(filter 0,$(shell id -u)),--allow-root)

test: DOC_TEST_PACKAGES = php-cli php-gearman libgearman-client-perl iproute2
# tests/test_top.py drives `gearmgr top` in tmux; tests/test_alert_rules.py runs promtool, which
# only Debian's prometheus package provides (its service is not needed: the tests only run
# promtool; on a machine with systemd, `systemctl disable --now prometheus` after installing)
test: TEST_TOOLS = tmux prometheus
test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check gearmgr tests bench workers
	$(VENV)/bin/ruff format --check gearmgr tests bench workers
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format gearmgr tests bench workers
	$(VENV)/bin/ruff check --fix gearmgr tests bench workers

bench: setup
	bench/setup.sh
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis gearmgr/_speedups.*.so
