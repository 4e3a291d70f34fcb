"""flowsamp.targets."""
