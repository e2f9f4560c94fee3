# make run: venv, install, the digits pipeline, its table.  make test: venv, install, the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all bench clean arm-deps gui-deps data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0  # the CPU build; an unpinned torch pulls a CUDA build
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/edgecnn pipeline digits --force

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_digits.py

clean:
	rm -rf $(VENV) runs

# verify-arm's prerequisites (as root): QEMU user-mode emulation and mmdebstrap for the arm64 rootfs
arm-deps:
	apt-get install -y --no-install-recommends qemu-user-static mmdebstrap

# the camera's window mode under test (as root): a virtual X display and a key-presser
gui-deps:
	apt-get install -y --no-install-recommends xvfb xauth xdotool

# Fashion-MNIST's four IDX files into /usr/share/datasets/fashion-mnist (Debian's package; needs root)
data:
	apt-get update -qq
	apt-get install -y -qq dataset-fashion-mnist
