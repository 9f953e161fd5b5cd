"""OpenVINO's usage reports, declined for every racer process.

`import openvino` imports its model converter, which reports the import to Google Analytics through
the `openvino_telemetry` package, and so do each `ov.convert_model` and NNCF's quantization, whenever
no consent file (`~/intel/openvino_telemetry`) says no: a missing file counts as yes. Each report
forks a process that resolves www.google-analytics.com. racer declines, whatever the file says: a car
on a track's Wi-Fi sends nothing its owner did not ask for, tests keep to loopback, and a fork from a
process with running threads can copy a lock that another thread holds (glibc's resolver lock, seen
hanging a test run's exit).

Both OpenVINO's converter (`openvino.tools.ovc`) and NNCF fall back to stubs that send nothing when
`openvino_telemetry` cannot be imported; a `None` in `sys.modules` makes that import fail. The
report on import means this must run before anything imports openvino, so the `car` package calls
it, and `racer` and `sim2real` import `car` first.
"""
from __future__ import annotations

import sys


def decline_openvino_usage_reports() -> None:
    """Make `import openvino_telemetry` raise ImportError in this process, unless it already ran."""
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # None: "import fails"
