"""flowsamp.samplers."""
