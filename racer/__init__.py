"""The `racer` command line (`racer.cli`), which composes car, sim2real and calibration, and the
processes, benchmarks and harnesses behind its commands."""
import car  # noqa: F401  (first: declines OpenVINO's usage reports before openvino is imported)
