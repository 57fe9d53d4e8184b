# The two commands a new user runs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# The C row encoder, built in place (optional: without it the engine runs in pure Python).
SPEEDUPS := stepping_django/engine/_speedups$(shell $(PYTHON) -c \
	"import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")

.PHONY: install demo test lint typecheck pytest clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

# Unlinked first: rewriting a library in place would crash the processes that have it loaded.
$(SPEEDUPS): $(VENV)/.installed setup.py stepping_django/engine/_speedups.c
	@rm -f $@ && mkdir -p build
	@if $(PY) setup.py -q build_ext --inplace >build/speedups.log 2>&1; then \
		cat build/speedups.log; \
	else \
		echo "The C encoder did not build (build/speedups.log): the engine runs in pure Python."; \
	fi

install: $(VENV)/.installed $(SPEEDUPS)

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
	STEPPING_PURE_PYTHON=1 $(PY) -m pytest tests/engine

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo_project/db.sqlite3 build \
		stepping_django/engine/_speedups.*.so
