"""flowsamp.cli."""
