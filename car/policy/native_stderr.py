"""Keep native libraries' log lines (absl/glog format) off the process's stderr for a call.

OpenVINO's TensorFlow frontend parses a `.pb` as a binary GraphDef and, failing that, as text
format; protobuf's C++ logger then writes lines such as
`E0000 00:00:1796028293.657027   11291 text_format.cc:417] Error parsing text-format
tensorflow.GraphDef: ...` straight to file descriptor 2, ahead of racer's own one-line reason
(and into `--json` consumers' and the car's logs). Python cannot catch them, so file descriptor 2
is pointed at a temporary file for the call, and afterwards everything but those native log lines
is written back to the real stderr: other threads' output is delayed, never lost.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# glog/absl line prefix `E0000 00:00:1796028293.657027   11291 file.cc:417] ` and absl's notice
# that it has not been initialised, which precedes the first such line in a process.
NATIVE_LOG_LINE = re.compile(rb"^([IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ [^ \]]+:\d+\] "
                             rb"|WARNING: All log messages before absl::)")

_lock = threading.Lock()


def drop_native_log_lines(captured: bytes) -> bytes:
    """`captured` without the native log lines (pure; bytes in, bytes out)."""
    return b"".join(line for line in captured.splitlines(keepends=True) if not NATIVE_LOG_LINE.match(line))


@contextmanager
def native_logs_silenced() -> Iterator[None]:
    """Run the body with native log lines on file descriptor 2 dropped; other output passes through."""
    with _lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = drop_native_log_lines(capture.read())
            if kept:
                os.write(2, kept)
