"""The joblib-free Isolation Forest scoring gives scikit-learn's numbers exactly."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from finbento.anomaly import score_samples


@pytest.mark.parametrize("max_features", [1.0, 0.5])  # all columns, and a subset per tree
def test_score_samples_equals_scikit_learn(max_features):
    rng = np.random.default_rng(7)
    train = rng.normal(size=(2000, 4)) * [1, 10, 100, 1000]
    forest = IsolationForest(n_estimators=50, max_samples=256, max_features=max_features,
                             random_state=0).fit(train)  # fmt: skip
    rows = np.vstack([rng.normal(size=(300, 4)) * [1, 10, 100, 1000], [[9, 90, 900, 9000]]])
    ours = score_samples(forest, rows)
    assert ours.shape == (301,)
    np.testing.assert_allclose(ours, forest.score_samples(rows), rtol=0, atol=1e-12)
    assert ours[-1] < np.median(ours)  # the outlier is more abnormal than the typical row


def test_score_samples_of_one_row_matches_a_batch():
    rng = np.random.default_rng(3)
    forest = IsolationForest(n_estimators=20, random_state=1).fit(rng.normal(size=(500, 3)))
    rows = rng.normal(size=(5, 3))
    batch = score_samples(forest, rows)
    singles = np.array([score_samples(forest, rows[i : i + 1])[0] for i in range(5)])
    np.testing.assert_allclose(batch, singles, atol=1e-12)
