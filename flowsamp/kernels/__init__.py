"""flowsamp.kernels."""
