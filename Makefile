# Everyday commands. Only python3 (3.11 or newer) is needed; everything else is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NAME ?=
ARGS ?=

.PHONY: run test bench lock messages format clean-data help

help:
	@echo "make run     start the whole product (web, worker, beat, embedded PostgreSQL and Redis)"
	@echo "make test    translations, ruff, mypy, migration check and the whole test suite"
	@echo "make bench   every benchmark in bench/ (make bench NAME=home runs one)"
	@echo "make lock    re-resolve requirements/*.lock from pyproject.toml"
	@echo "make messages  refresh locale/*/LC_MESSAGES/django.po from the code (needs GNU gettext)"

$(STAMP): requirements/dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/dev.lock
	@touch $@

run: $(STAMP)
	$(BIN)/python -m hls.run run

test: $(STAMP)
	$(BIN)/python -m hls.run test $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m hls.run bench $(NAME)

lock: $(STAMP)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --no-header --quiet -o requirements/base.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --no-header --quiet -c requirements/base.lock -o requirements/dev.lock

messages: $(STAMP)
	$(BIN)/python manage.py makemessages --locale uk --no-obsolete --ignore '.venv/*' --ignore '.data/*' --ignore 'staticfiles/*'

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-data:
	rm -rf .data
