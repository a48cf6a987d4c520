"""Bento build arguments: which BentoML model version each model service packages.

``finbento build`` passes ``--arg credit_risk_model=credit-risk:v3-1a2b3c4d``; BentoML stores the
arguments in the Bento, so a built Bento always serves exactly the versions it was built with.
Without arguments (``bentoml serve`` from source) the latest imported version is used.
"""

from functools import lru_cache

import bentoml
from pydantic import BaseModel


class BentoArgs(BaseModel):
    """Model tags in the BentoML store, one per model service."""

    credit_risk_model: str = "credit-risk:latest"
    fraud_model: str = "fraud:latest"
    fraud_challenger_model: str = ""  # set: the challenger scores in shadow (services/shadow)
    anomaly_model: str = "anomaly:latest"
    intent_model: str = "intent:latest"
    ner_model: str = "ner:latest"
    categorizer_model: str = "categorizer:latest"
    spending_model: str = "spending:latest"
    advisor_model: str = "advisor:latest"
    recommender_model: str = "recommender:latest"


ARGS: BentoArgs = bentoml.use_arguments(BentoArgs)


@lru_cache
def mlflow_version(tag: str) -> str:
    """MLflow registered version of a BentoML model (from its labels), for responses."""
    model = bentoml.models.get(tag)
    return model.info.labels.get("mlflow_version", str(model.tag.version))
