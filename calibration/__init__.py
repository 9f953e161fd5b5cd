"""Camera calibration and the interactive calibration flows the laptop and the console use."""
