"""Feature definitions, each defined once and shared by a model's trainer and its service."""
