"""flowsamp.numpyro."""
