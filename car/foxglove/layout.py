"""The Foxglove layout that opens the whole view in one window (docs/foxglove/racer.layout.json), built with
the SDK's layout types: the 3D scene of the track above the camera and the model's input, beside them the
policy's output, the chosen and applied commands, the domain-shift score and the car's warning, and control's mode,
latch and faults.

`python -m car.foxglove.layout > docs/foxglove/racer.layout.json` writes it (tests check the file is current).
"""
from __future__ import annotations

import json

import foxglove.layouts as fl

from car.transport.wire import SIM_FRAME


def _item(content: fl.BasePanel | fl.SplitContainer, proportion: float = 1.0) -> fl.SplitItem:
    return fl.SplitItem(proportion=proportion, content=content)


def _split(direction: str, *items: fl.SplitItem) -> fl.SplitContainer:
    return fl.SplitContainer(direction=direction, items=list(items))


def _plot(title: str, *paths: str, **series: str) -> fl.PlotPanel:
    return fl.PlotPanel(title=title, config=fl.PlotConfig(
        paths=[fl.PlotSeries(value=path, **series) for path in paths], show_legend=True, time_window_mode="sliding",
        following_view_width=20.0))


def racer_layout() -> fl.Layout:
    scene = fl.ThreeDeePanel(title="track, car and path (simulator)", config=fl.ThreeDeeConfig(
        follow_tf=SIM_FRAME, fixed_frame=SIM_FRAME, follow_mode="follow-none",
        topics={"/sim/scene": fl.BaseRendererSceneUpdateTopicSettings(visible=True)}))
    camera = fl.ImagePanel(title="camera", config=fl.ImageConfig(
        image_mode=fl.ImageModeConfig(image_topic="/camera/image_raw/compressed")))
    # 32FC1 values as the model takes them: 0..1 for racer bundles (scale 1/255); an AWS model's raw grey is
    # 0..255 (set the panel's max value to 255 for one).
    model_input = fl.ImagePanel(title="model input (as the policy fed it)", config=fl.ImageConfig(
        image_mode=fl.ImageModeConfig(image_topic="/policy/input"),
        topics={"/policy/input": fl.BaseRendererImageTopicSettings(
            color_mode="gradient", gradient=("#000000", "#ffffff"), min_value=0.0, max_value=1.0)}))
    latch = fl.IndicatorPanel(title="latched", config=fl.IndicatorConfig(
        path="/control/status.emergency_stop", style="background", fallback_color="#2e7d32", fallback_label="ok",
        rules=[fl.IndicatorRule(raw_value="true", operator="=", color="#c62828", label="EMERGENCY STOP")]))
    mode = fl.StateTransitionsPanel(title="mode and running", config=fl.StateTransitionsConfig(paths=[
        fl.StateTransitionsSeries(value="/control/status.mode", label="mode"),
        fl.StateTransitionsSeries(value="/control/status.running", label="running"),
        fl.StateTransitionsSeries(value="/control/status.latched", label="latched")]))
    status = fl.RawMessagesPanel(title="control status and faults",
                                 config=fl.RawMessagesConfig(topic_path="/control/status", expansion="all"))
    left = _split("column", _item(scene, 3), _item(_split("row", _item(camera), _item(model_input)), 2))
    right = _split(
        "column",
        _item(_plot("policy output (probabilities, or raw continuous values)", "/policy/output.values",
                    array_expansion="byIndex")),
        _item(_plot("steering (deg): chosen and applied", "/policy/drive.steering_deg", "/drive.steering_deg")),
        _item(_plot("speed (m/s): chosen and applied", "/policy/drive.speed_mps", "/drive.speed_mps")),
        _item(_plot("domain shift (about 1 in training, several times that elsewhere) and the car's warning",
                    "/policy/domain_shift.score", "/policy/domain_shift.warning")),
        _item(_split("row", _item(latch), _item(mode, 3)), 0.6),
        _item(status))
    return fl.Layout(content=_split("row", _item(left, 3), _item(right, 2)))


def layout_json() -> str:
    """The layout file's text (indented, so a change reads as a diff)."""
    return json.dumps(json.loads(racer_layout().to_json()), indent=2) + "\n"


if __name__ == "__main__":
    print(layout_json(), end="")
