"""flowsamp.flows."""
