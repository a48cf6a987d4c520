"""Trainers (one module per model) and the registry, promotion and import code they share."""
