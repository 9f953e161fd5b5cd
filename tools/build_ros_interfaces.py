"""Build the car's ROS 2 interface packages (car/interfaces/*: messages and services) into the running venv: the
last step of `make ros`.

Run with the venv's Python after `pip install -e '.[ros]'` (the ROS 2 Jazzy wheels). Each package is an
ordinary ament interface package, generated with the wheels' rosidl generators and installed with the
venv as its prefix, so `import ackermann_msgs.msg` and `import deepracer_interfaces_pkg.srv` work from the
venv with nothing to source.

The wheels' exported CMake targets name the include directories of the machine that built them
(`/opt/python/cpXY-cpXY/...`); they are pointed at this interpreter's headers and the venv's NumPy
first, or CMake refuses the imported targets. Needs cmake (3.22 or newer) and a C/C++ compiler.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parents[1]
INTERFACES = ROOT / "car" / "interfaces"
PREFIX = Path(sys.prefix)
BUILD = PREFIX / "build" / "ros_interfaces"
# what the wheels were built with: the manylinux interpreter's headers and its NumPy's
BUILD_MACHINE_NUMPY = re.compile(r"/opt/python/cp\d+-cp\d+/lib/python[\d.]+/site-packages/numpy/_core/include")
BUILD_MACHINE_PYTHON = re.compile(r"/opt/python/cp\d+-cp\d+/include/python[\d.]+")


def relocate_cmake_exports(prefix: Path = PREFIX) -> list[Path]:
    """Point the wheels' CMake exports at this interpreter's include dir and NumPy; returns the files changed."""
    changed = []
    for path in sorted((prefix / "share").glob("*/cmake/*.cmake")):
        text = path.read_text()
        fixed = BUILD_MACHINE_NUMPY.sub(numpy.get_include(), text)
        fixed = BUILD_MACHINE_PYTHON.sub(sysconfig.get_paths()["include"], fixed)
        if fixed != text:
            path.write_text(fixed)
            changed.append(path)
    return changed


def build_package(source: Path, prefix: Path = PREFIX) -> None:
    """Configure, build and install one ament interface package into `prefix`; CalledProcessError on failure."""
    build = BUILD / source.name
    env = {**os.environ, "AMENT_PREFIX_PATH": str(prefix)}
    subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-Wno-dev", "--log-level=WARNING",
                    f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DCMAKE_PREFIX_PATH={prefix}",
                    f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build), "--parallel", str(os.cpu_count() or 1)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--install", str(build)], check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    if shutil.which("cmake") is None:
        sys.exit("make ros: cmake is needed to build the message packages (apt-get install cmake g++)")
    relocate_cmake_exports()
    for source in sorted(p.parent for p in INTERFACES.glob("*/package.xml")):
        started = time.monotonic()
        try:
            build_package(source)
        except subprocess.CalledProcessError as exc:
            sys.exit(f"make ros: building {source.name} failed ({exc}); the output above says why")
        print(f"{source.name}: built into {PREFIX} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
