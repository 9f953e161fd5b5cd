"""The simulator, domain randomization, augmentation, gymnasium wrappers, training, export and the
sim-to-real gap evaluation: the laptop side, built on car, with the training extra."""
