# The two entry points of README.md; both create tools/venv first if it is missing.
VENV ?= tools/venv
PYTEST_ARGS ?=
# The mini recipe's last implemented stage; raised as stages land.
MINI_STOP_STAGE ?= 2

.PHONY: install test mini clean-mini

install:
	SEPALM_VENV=$(abspath $(VENV)) bash tools/install.sh

test: install
	. $(VENV)/bin/activate && OMP_NUM_THREADS=1 python -m pytest $(PYTEST_ARGS)

mini: install
	cd egs2/mini_librimix/sepalm1 && SEPALM_VENV=$(abspath $(VENV)) ./run.sh --stop_stage $(MINI_STOP_STAGE)

clean-mini:
	cd egs2/mini_librimix/sepalm1 && rm -rf data dump exp downloads
