"""bench/serving.py's on/off ratio: only from modes that ran at the same concurrency."""

import pytest

from bench.serving import on_off_ratios


def test_ratio_per_concurrency_where_both_modes_ran():
    results = [
        {"mode": "on", "concurrency": 1, "rps": 220.0},
        {"mode": "on", "concurrency": 32, "rps": 800.0},
        {"mode": "on", "concurrency": 64, "rps": 900.0},
        {"mode": "off", "concurrency": 1, "rps": 200.0},
        {"mode": "off", "concurrency": 32, "rps": 400.0},
        {"mode": "cached", "concurrency": 64, "rps": 2000.0},
    ]
    assert on_off_ratios(results) == {1: pytest.approx(1.1), 32: pytest.approx(2.0)}


def test_no_ratio_without_an_off_run_or_with_zero_throughput_off():
    assert on_off_ratios([{"mode": "scored", "concurrency": 32, "rps": 500.0}]) == {}
    off_failed = [{"mode": "on", "concurrency": 8, "rps": 5.0},
                  {"mode": "off", "concurrency": 8, "rps": 0.0}]  # fmt: skip
    assert on_off_ratios(off_failed) == {}
