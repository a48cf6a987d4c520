"""BentoML services: one per model, the public API services and their request/response schemas."""
