"""BentoML services: one per model, the public API services and their request/response schemas."""

from services import bentoml_fixes

bentoml_fixes.apply()
