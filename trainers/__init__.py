"""Trainers (one module per model) and the registry, promotion and import code they share.

:data:`TRAINERS` maps each model name to its trainer module; every trainer module offers
``train(settings, sample, promote, on_stage)``, ``gate(...)``, ``load_split(settings)`` and
``export(version, directory)``.
"""

TRAINERS: dict[str, str] = {
    "credit-risk": "trainers.credit_risk",
    "fraud": "trainers.fraud",
    "anomaly": "trainers.anomaly",
    "intent": "trainers.intent",
    "ner": "trainers.ner",
    "categorizer": "trainers.categorizer",
    "spending": "trainers.spending",
    "advisor": "trainers.advisor",
    "recommender": "trainers.recommender",
}
