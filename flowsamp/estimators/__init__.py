"""flowsamp.estimators."""
