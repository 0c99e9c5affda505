# The two entry points of README.md; both create tools/venv first if it is missing.
VENV ?= tools/venv
PYTEST_ARGS ?=
# Stages of the stage table that have not landed yet; shrinks as they do.
MINI_SKIP_STAGES ?=

.PHONY: install test mini clean-mini

install:
	SEPALM_VENV=$(abspath $(VENV)) bash tools/install.sh

test: install
	. $(VENV)/bin/activate && OMP_NUM_THREADS=1 python -m pytest $(PYTEST_ARGS)

mini: install
	cd egs2/mini_librimix/sepalm1 && SEPALM_VENV=$(abspath $(VENV)) ./run.sh --skip_stages "$(MINI_SKIP_STAGES)"

clean-mini:
	cd egs2/mini_librimix/sepalm1 && rm -rf data dump exp downloads
