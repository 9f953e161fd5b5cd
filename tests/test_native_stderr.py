"""Native (absl/glog) log lines written to file descriptor 2 are dropped; everything else gets through."""
from __future__ import annotations

import os
import threading

from car.policy.native_stderr import drop_native_log_lines, native_logs_silenced

PROTOBUF = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            b"E0000 00:00:1796028293.657027   11291 text_format.cc:417] Error parsing text-format tensorflow.GraphDef: "
            b"1:1: Expected identifier, got: \xb4\n")


def test_only_native_log_lines_are_dropped():
    kept = b"racer: a line of our own\nE0000 is not a log line without its prefix\n"
    assert drop_native_log_lines(PROTOBUF + kept + PROTOBUF) == kept
    assert drop_native_log_lines(b"W1130 08:44:33.123456 42 conv.cc:9] glog warning\n") == b""


def test_native_lines_vanish_and_other_output_is_written_after(capfd):
    with native_logs_silenced():
        os.write(2, PROTOBUF)
        os.write(2, b"another thread's line\n")
        worker = threading.Thread(target=os.write, args=(2, b"from a thread\n"))
        worker.start()
        worker.join()
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "another thread's line\nfrom a thread\nafter\n"


def test_stderr_is_restored_when_the_body_raises(capfd):
    try:
        with native_logs_silenced():
            os.write(2, PROTOBUF + b"kept\n")
            raise ValueError("boom")
    except ValueError:
        pass
    os.write(2, b"restored\n")
    assert capfd.readouterr().err == "kept\nrestored\n"
