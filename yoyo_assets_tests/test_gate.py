"""The quality gate's statistic (gate.py) and how a version's evidence is judged
(version_training.heldout_evaluation)."""

import pytest

from yoyo_assets.adapters.gate import paired_difference


def test_an_interval_that_crosses_zero_fails_the_gate_but_not_the_mean():
    # Eight held-out tuples: the adapter helps on average, but two tuples got much worse.
    base = [2.0, 2.1, 1.9, 2.2, 2.0, 2.3, 1.8, 2.0]
    adapter = [1.7, 1.8, 1.6, 1.9, 1.7, 2.0, 2.3, 2.5]
    diff = paired_difference(base, adapter)
    assert diff.mean < 0 < diff.high and diff.low < 0
    assert not diff.passes("upper_bound")
    assert diff.passes("mean")


def test_a_consistent_improvement_passes_and_the_interval_holds_the_mean():
    base = [2.0, 2.1, 1.9, 2.2, 2.0, 2.3, 1.8, 2.0, 2.4, 2.1]
    adapter = [b - 0.3 + 0.02 * i for i, b in enumerate(base)]
    diff = paired_difference(base, adapter, confidence=0.9)
    assert diff.low <= diff.mean <= diff.high < 0
    assert diff.passes("upper_bound") and diff.n == 10 and diff.confidence == 0.9
    assert paired_difference(base, adapter, confidence=0.9) == diff  # seeded: reproducible


def test_no_spread_gives_a_point_interval_and_bad_input_is_refused():
    diff = paired_difference([0.6931] * 4, [0.5] * 4)
    assert diff.low == diff.high == pytest.approx(0.5 - 0.6931)
    with pytest.raises(ValueError, match="paired"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="paired"):
        paired_difference([], [])
