"""Laptop-side model tools: a model on pictures (predict), occlusion heatmaps (explain), and INT8
quantization behind an equivalence gate (quantize)."""
