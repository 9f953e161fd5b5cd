"""The console page in real headless Chromium, and the simulated car it is tested against."""
