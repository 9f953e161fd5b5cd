"""`racer soak` in short: the local car under the client loop for one cycle of its loop, its report and plot.

The long soaks (15+ minutes per transport) are the command's job; this checks that every step of the
loop works against the real console, that the sampler sees the car's process and that the report
says what it measured.
"""
from __future__ import annotations

import json

import pytest

from racer.commands.soak import summary
from racer.uptime.soak import Soak

pytestmark = pytest.mark.timeout(300)


def test_a_short_soak_runs_every_step_and_reports_what_it_sampled(tmp_path):
    report = Soak("local", minutes=0.1, out=tmp_path, sample_s=2.0).run()
    assert report["errors"] == 0, report["first_errors"]
    assert report["cycles"] >= 1
    assert report["estop_ms"]["n"] == 2 * report["cycles"]  # two per cycle, each answered
    car = report["processes"]["car"]
    assert car["rss_mb"][0] > 50 and car["fds"][0] > 3 and car["threads"][0] > 2
    state, root = report["state_dir_bytes"], tmp_path / "soak-local" / "state"
    # The first calibration save writes calibration.json (and keeps an old one as .bak) once; on a loaded
    # machine this short run's baseline sample can come before it.
    once = sum(path.stat().st_size for path in (root / "calibration.json", root / "calibration.json.bak")
               if path.exists())
    assert state["last"] <= state["baseline"] + once, state
    assert list(root.joinpath("models").iterdir()) == [] and list(root.joinpath("uploads").iterdir()) == []
    assert open(report["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    samples = json.loads((tmp_path / "soak-local" / "samples.json").read_text())
    assert len(samples["processes"]["car"]) >= 5
    lines = summary(report, tmp_path / "report-local.json").splitlines()
    assert lines[0].startswith(f"soak local: {report['minutes']} min, {report['cycles']} client cycle")
    assert ", 0 errors; a -> b: the baseline window" in lines[0]
    assert lines[1].startswith(f"  car        RSS {car['rss_mb'][0]:.1f} -> {car['rss_mb'][-1]:.1f} MB")
    growth = state["last"] - state["baseline"]
    assert lines[2] == f"  state dir  {state['baseline']} -> {state['last']} bytes ({growth:+d})"
    assert f"p50 {report['estop_ms']['p50']} ms" in lines[3]
    assert lines[-1] == f"  report {tmp_path / 'report-local.json'}, plot {report['plot']}"


def test_the_summary_of_a_soak_that_measured_nothing_and_failed_says_so_one_line_per_error(tmp_path):
    report = {"transport": "dds", "minutes": 0.1, "cycles": 0, "errors": 1,
              "first_errors": ["the car exited during the soak\n  (status 1)"], "processes": {},
              "state_dir_bytes": {"start": 334, "baseline": 334, "last": 334, "end": 334, "growth": 0},
              "estop_ms": {"n": 0, "p50": None, "p99": None, "max": None},
              "pipeline_ms": {"n": 0, "p50": None, "p99": None},
              "baseline_s": 1.2, "load": [1.0, 1.0], "plot": str(tmp_path / "soak-dds.png")}
    assert summary(report, tmp_path / "report-dds.json").splitlines() == [
        "soak dds: 0.1 min, 0 client cycles, 1 error; a -> b: the baseline window (from 1.2 s) -> the last",
        "  state dir  334 -> 334 bytes (+0)",
        "  e-stop     not measured",
        "  pipeline   not measured",
        "  error: the car exited during the soak (status 1)",
        f"  report {tmp_path / 'report-dds.json'}, plot {tmp_path / 'soak-dds.png'}",
    ]
