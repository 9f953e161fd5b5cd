# The on-car image: ROS 2 Jazzy + racer; `docker run` starts `ros2 launch racer car.launch.py`: the car's
# nodes and the device console node (HTTPS on 443, its state in /var/lib/racer: mount a volume there).
# Host devices (camera, PWM sysfs, serial, I2C) and networking: docs/docker.md.
#
# Jazzy rather than Humble: the pinned OpenVINO has no wheel for Humble's Python 3.10. ROS's Python
# extensions are built against the distribution's NumPy 1.x, so NumPy and OpenCV come from Ubuntu
# and pip installs everything else the project pins (with the Foxglove view's SDK, so `foxglove:=` works),
# into a venv that sees the system packages.
FROM ros:jazzy-ros-base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ROS packages follow the distribution's own releases; pinning them would break every sync.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        "ros-${ROS_DISTRO}-ackermann-msgs" \
        "ros-${ROS_DISTRO}-diagnostic-msgs" \
        "ros-${ROS_DISTRO}-rmw-cyclonedds-cpp" \
        python3-venv \
        python3-numpy \
        python3-opencv \
        v4l-utils \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/racer
COPY . /opt/racer

RUN python3 -m venv --system-site-packages /opt/racer/venv \
    && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; deps = p["dependencies"] + p["optional-dependencies"]["foxglove"]; print("\n".join(d for d in deps if not d.startswith("opencv")))' > /tmp/requirements.txt \
    && echo "numpy<2" > /tmp/constraints.txt \
    && /opt/racer/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt \
    && /opt/racer/venv/bin/pip install --no-cache-dir --no-deps -e /opt/racer \
    && rm /tmp/requirements.txt /tmp/constraints.txt

# deepracer_interfaces_pkg (ServoCtrlMsg, the simulator link; the stock services control answers) is in no ROS
# release: build the project's own interface package, the one `make ros` builds, into the image's ament prefix.
# hadolint ignore=SC1091
RUN . "/opt/ros/${ROS_DISTRO}/setup.sh" \
    && colcon --log-base /tmp/colcon-log build --merge-install \
        --base-paths car/interfaces/deepracer_interfaces_pkg \
        --build-base /tmp/colcon-build --install-base /opt/racer/install \
    && rm -rf /tmp/colcon-log /tmp/colcon-build

# Register the package in an ament prefix so `ros2 launch racer car.launch.py` finds its launch files.
RUN mkdir -p /opt/racer/install/share/ament_index/resource_index/packages /opt/racer/install/share/racer \
    && touch /opt/racer/install/share/ament_index/resource_index/packages/racer \
    && ln -s /opt/racer/launch /opt/racer/install/share/racer/launch \
    && ln -s /opt/racer/package.xml /opt/racer/install/share/racer/package.xml

# The entrypoint sources only /opt/ros: the racer prefix (Ubuntu 24.04's Python 3.12) is added here, and
# ROS's setup keeps what is already set.
ENV PATH="/opt/racer/venv/bin:${PATH}" \
    AMENT_PREFIX_PATH="/opt/racer/install" \
    PYTHONPATH="/opt/racer/install/lib/python3.12/site-packages" \
    LD_LIBRARY_PATH="/opt/racer/install/lib" \
    RMW_IMPLEMENTATION="rmw_cyclonedds_cpp" \
    PYTHONUNBUFFERED="1" \
    XDG_STATE_HOME="/var/lib"

EXPOSE 443

CMD ["ros2", "launch", "racer", "car.launch.py"]
