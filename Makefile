# The two commands a new user runs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install demo test lint typecheck pytest clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

demo: install
	DJANGO_SETTINGS_MODULE=demo_project.settings $(PY) manage.py migrate --noinput -v 0
	DJANGO_SETTINGS_MODULE=demo_project.settings $(PY) manage.py shop_demo
	DJANGO_SETTINGS_MODULE=demo_project.settings $(PY) manage.py stepping status

lint: install
	$(VENV)/bin/ruff check stepping_django tests benchmarks demo_project

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(PY) -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo_project/db.sqlite3
