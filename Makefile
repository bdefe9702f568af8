# The platform's commands. `make test` and `make dev` need only Python 3.11 and
# Debian 12: `make system-deps` installs the server packages they use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

INVENTORY ?= inventory/local
ANSIBLE_ARGS ?=

.PHONY: help venv system-deps deploy test dev bench clean

help:
	@echo "make deploy      the whole platform on this host (Ansible, inventory/local); prints the URLs"
	@echo "make test        run the test suite (real PostgreSQL, Redis, Airflow, Chromium)"
	@echo "make dev         throwaway PostgreSQL + Redis, migrated, and the API on 127.0.0.1:8000"
	@echo "make bench       benchmarks (bench/): the API, then maintenance at 10M rows; tables + bench/results/*.json"
	@echo "make system-deps apt-get install the Debian packages the tests and dev stack use"

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

system-deps:
	bash .ci/system-deps

deploy: venv
	$(VENV)/bin/ansible-playbook -i $(INVENTORY) playbooks/site.yml $(ANSIBLE_ARGS)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

dev: venv
	$(PY) -m dev

bench: venv
	$(PY) -m bench.run
	$(PY) -m bench.maintenance

clean:
	rm -rf $(VENV) tests/artifacts bench/results .pytest_cache
