# The two commands of the README:
#   make demo   installs everything and runs the main job offline (real images, real prior)
#   make test   installs everything and runs the test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install assets demo test

install:
	$(PIP) install -q -c constraints.txt -e ".[test]"

assets:
	bash scripts/install_offline_assets.sh

demo: install assets
	bash recipes/demo.sh

test: install assets
	$(PYTHON) -m pytest
