# make run: venv, install, the digits pipeline, its table.  make test: venv, install, the tests.
# make test-all (as root): the system packages the slow tests need, then every test, slow ones too.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all bench clean apt-update arm-deps gui-deps ssh-deps photos data openvino-env sweep-env

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

# the slow tests too: verify-arm under QEMU (its arm64 cache is built on first use), window mode on Xvfb,
# --provider openvino from .venv-openvino, and the photo set with Debian's photos
test-all: $(STAMP) arm-deps gui-deps ssh-deps photos openvino-env sweep-env
	$(BIN)/python -m pytest -q -m ''

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_digits.py

clean:
	rm -rf $(VENV) $(OV_VENV) runs

# a second environment whose onnxruntime is the onnxruntime-openvino build: its OpenVINO EP runs on any
# x86-64 CPU OpenVINO supports (the edgecnn[openvino] plugin serves Intel devices only)
OV_VENV := .venv-openvino
$(OV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OV_VENV)
	$(OV_VENV)/bin/pip install --quiet --upgrade pip
	$(OV_VENV)/bin/pip install --quiet -e .
	$(OV_VENV)/bin/pip uninstall --quiet -y onnxruntime  # the same module as onnxruntime-openvino's: one of them only
	$(OV_VENV)/bin/pip install --quiet onnxruntime-openvino
	touch $@

openvino-env: $(OV_VENV)/.installed

# the sweep extra (Ray) in .venv: `edgecnn sweep`'s Ray engine and its test
$(VENV)/.sweep-installed: $(STAMP)
	$(BIN)/pip install --quiet -e '.[sweep]'
	touch $@

sweep-env: $(VENV)/.sweep-installed

# System packages, installed as root with apt-get only when one of their tools is missing from PATH
# (for data packages: one of their files): a second run, or a machine that has them, runs no apt at all.
# `apt-get update` runs once per make run, before the first install, and only when a tool or file of a
# goal asked for is missing.
ARM_TOOLS := qemu-aarch64-static mmdebstrap
ARM_PACKAGES := qemu-user-static mmdebstrap
GUI_TOOLS := xvfb-run xauth xdotool
GUI_PACKAGES := xvfb xauth xdotool
# the camera window is Tk: $(PYTHON)'s tkinter, which Debian's python3 has from python3-tk (pyenv and python.org builds carry their own)
GUI_FILES = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/tkinter/__init__.py
# edgecnn/data/photos.py's Debian photos (66 MB installed): one file of each package stands for it
PHOTO_FILES := /usr/share/games/jigzo/puzzles/00_default/bike-3x4.pzl /usr/share/backgrounds/mate/nature/LadyBird.jpg \
	/usr/share/backgrounds/seeding_by_Clements_Engelhardt.jpg
PHOTO_PACKAGES := jigzo-data mate-backgrounds lomiri-wallpapers-16.04
# bench --remote's tests log in to a throwaway sshd on 127.0.0.1 (sshd is named by path: /usr/sbin is not on every PATH)
SSH_TOOLS := ssh ssh-keygen /usr/sbin/sshd
SSH_PACKAGES := openssh-client openssh-server
APT_TOOLS := $(if $(filter test-all arm-deps,$(MAKECMDGOALS)),$(ARM_TOOLS)) $(if $(filter test-all gui-deps,$(MAKECMDGOALS)),$(GUI_TOOLS)) \
	$(if $(filter test-all ssh-deps,$(MAKECMDGOALS)),$(SSH_TOOLS))
APT_FILES := $(if $(filter test-all photos,$(MAKECMDGOALS)),$(PHOTO_FILES)) $(if $(filter test-all gui-deps,$(MAKECMDGOALS)),$(GUI_FILES))
# $(call apt_install,TOOLS,PACKAGES): install PACKAGES unless every one of TOOLS is on PATH, then check them
apt_install = missing=; for tool in $(1); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	[ -z "$$missing" ] && exit 0; \
	[ "$$(id -u)" = 0 ] || { echo "$@: missing$$missing; as root: make $@ (apt-get install $(2))" >&2; exit 1; }; \
	echo "apt-get install $(2)"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2) >/dev/null || exit; \
	for tool in $(1); do command -v $$tool >/dev/null 2>&1 || { echo "$@: no $$tool after apt-get install $(2)" >&2; exit 1; }; done
# $(call apt_install_files,FILES,PACKAGES): the same for packages of data, judged by FILES being there
apt_install_files = missing=; for file in $(1); do [ -f $$file ] || missing="$$missing $$file"; done; \
	[ -z "$$missing" ] && exit 0; \
	[ "$$(id -u)" = 0 ] || { echo "$@: missing$$missing; as root: make $@ (apt-get install $(2))" >&2; exit 1; }; \
	echo "apt-get install $(2)"; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2) >/dev/null || exit; \
	for file in $(1); do [ -f $$file ] || { echo "$@: no $$file after apt-get install $(2)" >&2; exit 1; }; done

apt-update:
	@for tool in $(APT_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 && continue; \
	  [ "$$(id -u)" = 0 ] || exit 0; \
	  echo "apt-get update"; apt-get update -qq; exit; \
	done; \
	for file in $(APT_FILES); do \
	  [ -f $$file ] && continue; \
	  [ "$$(id -u)" = 0 ] || exit 0; \
	  echo "apt-get update"; apt-get update -qq; exit; \
	done

# verify-arm's prerequisites: QEMU user-mode emulation and mmdebstrap for the arm64 rootfs
arm-deps: apt-update
	@$(call apt_install,$(ARM_TOOLS),$(ARM_PACKAGES))

# the camera's window mode under test: a virtual X display, a key-presser and Tk
gui-deps: apt-update
	@$(call apt_install,$(GUI_TOOLS),$(GUI_PACKAGES))
	@$(call apt_install_files,$(GUI_FILES),python3-tk)

# bench --remote under test: the ssh client and an sshd the tests start on a free port (apt's postinst also
# starts and enables the ssh service on port 22 where systemd runs; `systemctl disable --now ssh` if unwanted)
ssh-deps: apt-update
	@$(call apt_install,$(SSH_TOOLS),$(SSH_PACKAGES))

# the photo set's Debian photos (edgecnn/data/photos.py: jigzo's puzzles, MATE's and Ubuntu 16.04's wallpapers);
# its PyPI photos come with edgecnn[photos], part of edgecnn[train]
photos: apt-update
	@$(call apt_install_files,$(PHOTO_FILES),$(PHOTO_PACKAGES))

# Fashion-MNIST's four IDX files into /usr/share/datasets/fashion-mnist (Debian's package; needs root)
data:
	apt-get update -qq
	apt-get install -y -qq dataset-fashion-mnist
