"""The `racer` command line (`racer.cli`), which composes car, sim2real and calibration, and the
processes, benchmarks and harnesses behind its commands."""
