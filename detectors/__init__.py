"""Detectors: the rule engine, anomaly models, asset inventory and the `Alert` type."""
