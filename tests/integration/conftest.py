"""Models trained once per test session on small real samples, imported into the BentoML store."""

from dataclasses import dataclass

import pytest

from finbento.settings import GatePolicy, Settings
from tests.conftest import sample_policy
from trainers import (
    advisor,
    anomaly,
    bento_import,
    categorizer,
    credit_risk,
    fraud,
    intent,
    ner,
    recommender,
    registry,
    spending,
)

OPEN = GatePolicy()  # small samples: register and promote whatever trains


@dataclass
class Trained:
    settings: Settings
    tags: dict[str, str]
    versions: dict[str, str]
    models: dict[str, object]


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    s = Settings(state_dir=tmp_path_factory.mktemp("models"), credit_risk_gate=sample_policy(),
                 fraud_gate=OPEN, anomaly_gate=OPEN, intent_gate=OPEN, ner_gate=OPEN,
                 categorizer_gate=OPEN, spending_gate=OPEN, advisor_gate=OPEN,
                 recommender_gate=OPEN, intent_epochs=1)  # fmt: skip
    client = registry.configure(s)
    out = Trained(s, {}, {}, {})
    samples = (("credit-risk", credit_risk, 4000), ("fraud", fraud, 60000),
               ("anomaly", anomaly, 60000), ("intent", intent, 800), ("ner", ner, 600),
               ("categorizer", categorizer, 1500), ("spending", spending, None),
               ("advisor", advisor, 200), ("recommender", recommender, 6000))  # fmt: skip
    for name, trainer, sample in samples:
        result = trainer.train(s, sample=sample)
        model = bento_import.import_champion(client, name, trainer.export)
        again = bento_import.import_champion(client, name, trainer.export)
        assert again.tag == model.tag  # re-import is a no-op
        out.tags[name], out.versions[name], out.models[name] = str(model.tag), result.version, model
    return out
