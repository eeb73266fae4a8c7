"""The verdict statistics (sparsecod.stats, issue 18): known answers of the tests and of the verdict rule."""

from __future__ import annotations

import numpy as np
import pytest

from sparsecod import stats

DEPTHS = [12, 16, 24, 32]


def verdict(x, y, sign, y_init=None) -> tuple[str, str]:
    test = stats.trend_test(x, y, sign)
    if y_init is None:
        return stats.decide(test, needs_control=False)
    init_rho = stats.trend_test(x, y_init, sign).stat
    beyond = stats.trend_test(x, np.subtract(y, y_init), sign)
    return stats.decide(test, init_holds=sign * init_rho > 0, beyond=beyond)


def test_planted_trend_is_reproduced_shuffled_inconclusive_anti_trend_contradicted() -> None:
    rng = np.random.default_rng(0)
    x = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], 2)  # 5 runs x 2 seeds
    planted = x + rng.normal(0, 0.3, len(x))
    assert verdict(x, planted, +1)[0] == stats.REPRODUCED
    assert verdict(x, -planted, +1)[0] == stats.CONTRADICTED
    shuffled = np.array([0.3, 0.9, 0.1, 0.7, 0.5, 0.2, 0.8, 0.4, 0.6, 0.35])  # ρ(x, ·) ≈ 0
    v, reason = verdict(x, shuffled, +1)
    assert v == stats.INCONCLUSIVE and "spans the null" in reason


def test_three_runs_can_never_reproduce_a_trend() -> None:
    v, reason = verdict([1, 2, 3], [1, 2, 3], +1)
    assert v == stats.INCONCLUSIVE and "1/3!" in reason


def test_exact_p_values_and_false_positive_rate() -> None:
    t = stats.trend_test(DEPTHS, [1, 2, 3, 4], +1)
    assert t.p_agree == pytest.approx(1 / 24) and t.p_against == 1 and t.stat == 1
    assert stats.trend_test(DEPTHS, [1, 2, 3, 4], -1).p_against == pytest.approx(1 / 24)
    rates = {n: stats.false_positive_rate(n) for n in (3, 4, 5, 6)}
    assert rates[3] == 0 and rates[4] == pytest.approx(1 / 24)
    assert all(r <= stats.ALPHA for r in rates.values())


def test_claim_true_at_init_and_unchanged_by_training_is_not_reproduced() -> None:
    init = [0.025, 0.033, 0.049, 0.082]  # the audit's untrained variance by depth
    v, reason = verdict(DEPTHS, init, +1, y_init=init)
    assert v == stats.INCONCLUSIVE and "holds at init" in reason
    grown = [0.1, 0.3, 0.9, 2.7]  # training amplifies the trend: trained − init rises with depth
    assert verdict(DEPTHS, grown, +1, y_init=init)[0] == stats.REPRODUCED
    flat_init = [0.05, 0.05, 0.05, 0.05]
    v, reason = verdict(DEPTHS, grown, +1, y_init=flat_init)
    assert v == stats.REPRODUCED and "not so at init" in reason


def test_floor_and_missing_are_inconclusive_with_their_reason() -> None:
    assert stats.decide(None, missing="too few runs") == (stats.INCONCLUSIVE, "too few runs")
    v, reason = stats.decide(stats.trend_test(DEPTHS, [0, 0, 0, 0], -1), floor="U = 0 in every run")
    assert v == stats.INCONCLUSIVE and reason.startswith("floor")
    v, reason = stats.decide(stats.trend_test(DEPTHS, [4, 3, 2, 1], -1), init_holds=None)
    assert v == stats.INCONCLUSIVE and "no untrained control" in reason


def test_mean_and_normal_tests_and_intervals() -> None:
    t = stats.mean_test([0.5, 0.6, 0.55], +1)
    assert t.low < 0.55 < t.high and t.p_agree < 0.01 and t.p_against > 0.99
    z = stats.normal_test(0.3, 0.1, -1)
    assert z.p_against == pytest.approx(0.00135, abs=1e-5) and z.low == pytest.approx(0.3 - 1.96 * 0.1, abs=1e-3)
    assert stats.se_from_interval(z.low, z.high) == pytest.approx(0.1)
    values = np.arange(20.0)
    low, high = stats.window_interval(lambda i: float(values[i].mean()), 20)
    assert low < 9.5 < high and high - low < 8
    assert np.isnan(stats.window_interval(lambda i: 0.0, 1)).all()
