"""The simulator, domain randomization, augmentation, gymnasium wrappers, training, export and the
sim-to-real gap evaluation: the laptop side, built on car, with the training extra."""
import car  # noqa: F401  (first: declines OpenVINO's usage reports before openvino is imported)
