# The two commands of the README:
#   make demo   installs everything and runs the main job offline (real images, real prior)
#   make test   installs everything and runs the test suite (`make test PYTEST_ARGS="-x tests/hub"`)
#
# Both install into one virtual environment, never into the interpreter on PATH: Debian's python3
# refuses `pip install` (PEP 668, "externally managed"), and the torch or transformers a user has
# there must not be swapped for the pins. The environment is
#   - the activated one, if there is one ($VIRTUAL_ENV; it gets the pins of constraints.txt), else
#   - the checkout's .venv, made on first use with $(PYTHON) (default python3; `make test
#     PYTHON=/usr/bin/python3.11` picks another; on Debian it needs the python3-venv package).
# `make VENV=path` names another one. Installs are remembered by stamp files in the environment:
# a second `make test` reinstalls only when setup.cfg, pyproject.toml, constraints.txt or the
# assets script changed (delete the environment to start over).
PYTHON ?= python3
VENV ?= $(or $(VIRTUAL_ENV),.venv)
PYTEST_ARGS ?=

VENV_DIR := $(abspath $(VENV))
VENV_PYTHON := $(VENV_DIR)/bin/python
INSTALLED := $(VENV_DIR)/.rela-hf-installed
ASSETS := $(VENV_DIR)/.rela-hf-assets
# the demo and the tests run as in an activated environment: its console commands
# (rela-hf-*, accelerate) come first on PATH
ACTIVATED := VIRTUAL_ENV="$(VENV_DIR)" PATH="$(VENV_DIR)/bin:$$PATH"

.PHONY: install assets demo lint test

install: $(INSTALLED)

assets: $(ASSETS)

demo: install assets
	$(ACTIVATED) bash recipes/demo.sh

# The checks docs/design.md names (pyproject.toml configures them): ruff's rule set, the format,
# the types of the package. `make test` runs them first; `make lint` alone takes well under a minute.
lint: install
	"$(VENV_PYTHON)" -m ruff check .
	"$(VENV_PYTHON)" -m ruff format --check .
	"$(VENV_PYTHON)" -m mypy rela_hf

test: install assets lint
	$(ACTIVATED) "$(VENV_PYTHON)" -m pytest $(PYTEST_ARGS)

# A failed `venv` (Debian without python3-venv) leaves bin/python behind; removing it makes the
# next `make` try again instead of using an environment without pip.
$(VENV_PYTHON):
	@echo '$(PYTHON) -m venv "$(VENV_DIR)"'
	@$(PYTHON) -m venv "$(VENV_DIR)" || { rm -f "$(VENV_PYTHON)"; \
	    echo "Could not make a virtual environment with $(PYTHON) in $(VENV_DIR): on Debian/Ubuntu" \
	         "install python3-venv (apt-get install python3-venv), or name another Python:" \
	         "make PYTHON=python3.11 ..." >&2; exit 1; }

$(INSTALLED): setup.cfg pyproject.toml constraints.txt | $(VENV_PYTHON)
	"$(VENV_PYTHON)" -m pip install -q -c constraints.txt -e ".[test]"
	touch "$@"

$(ASSETS): scripts/install_offline_assets.sh | $(INSTALLED)
	bash scripts/install_offline_assets.sh "$(VENV_PYTHON)"
	touch "$@"
