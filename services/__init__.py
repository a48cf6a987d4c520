"""BentoML services: one per model, the public API services and their request/response schemas."""

from finbento import log_privacy
from services import bentoml_fixes

bentoml_fixes.apply()
log_privacy.install()  # BentoML has configured this worker's logging before importing us
