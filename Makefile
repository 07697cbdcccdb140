# vnncert: make install | make demo | make test
# Finds python3.10 on PATH, or in pyenv's versions folder when PATH lacks pyenv's shims.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON310 := $(shell for p in $$(command -v python3.10 2>/dev/null) $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 /root/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do [ -x "$$p" ] && "$$p" -c 'import sys; assert sys.version_info[:2]==(3,10)' 2>/dev/null && { echo "$$p"; break; }; done)
STAMP := $(VENV)/.installed

.PHONY: install demo test models bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON310)" || { echo "error: python3.10 not found (PATH or pyenv versions folder)" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	@touch $(STAMP)

demo: install
	$(PY) -m vnncert.demo

test: install
	$(PY) -m pytest -q tests

models: install
	$(PY) vnnlib_specs/make_models.py

clean:
	rm -rf $(VENV) build *.egg-info plugin/*.egg-info
