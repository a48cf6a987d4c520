from finbento.features.credit_risk import TARGET
from finbento.settings import Settings
from trainers.credit_risk import load_split


def test_split_is_disjoint_stratified_and_reproducible():
    s = load_split(Settings())
    idx = [set(part.index) for part in s]
    assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2])
    assert [len(p) for p in s] == [14400, 4800, 4800]
    rates = [p[TARGET].mean() for p in s]
    assert max(rates) - min(rates) < 0.002
    assert set(load_split(Settings()).test.index) == idx[2]


def test_sampled_test_rows_are_held_out_from_a_full_training():
    full = load_split(Settings())
    sample = load_split(Settings(), sample=3000)
    assert 2900 <= sum(len(p) for p in sample) <= 3100
    assert set(sample.test.index) <= set(full.test.index)
    assert set(sample.train.index) <= set(full.train.index)
