"""Built-in DeepRacer track simulator: geometry, vehicle, camera, world and a privileged expert."""
from .adapters import SimActuator, SimCamera
from .expert import ExpertParams, PurePursuitExpert
from .render import CameraParams, Renderer, SceneParams
from .track import Track
from .vehicle import Vehicle, VehicleParams
from .world import Simulator, StepInfo

__all__ = [
    "CameraParams",
    "ExpertParams",
    "PurePursuitExpert",
    "Renderer",
    "SceneParams",
    "SimActuator",
    "SimCamera",
    "Simulator",
    "StepInfo",
    "Track",
    "Vehicle",
    "VehicleParams",
]
