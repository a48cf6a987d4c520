"""Bento build arguments: which BentoML model version each model service packages.

``finbento build`` passes ``--arg credit_risk_model=credit-risk:v3-1a2b3c4d``; BentoML stores the
arguments in the Bento, so a built Bento always serves exactly the versions it was built with.
Without arguments (``bentoml serve`` from source) the latest imported version is used.
"""

import bentoml
from pydantic import BaseModel


class BentoArgs(BaseModel):
    """Model tags in the BentoML store, one per model service."""

    credit_risk_model: str = "credit-risk:latest"


ARGS: BentoArgs = bentoml.use_arguments(BentoArgs)
