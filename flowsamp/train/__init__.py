"""flowsamp.train."""
