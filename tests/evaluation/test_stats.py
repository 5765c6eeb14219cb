"""lib/evaluation/stats.py against hand-computed values and scipy's (pasted as constants: scipy is not a dependency)."""

import math

import pytest

from lib.evaluation import stats

X = [1.08, 1.1, 1.28, 1.62, 2.0, 0.9, 1.3, 1.15]
Y = [1.1] * 5 + [1.2, 1.5]
A = [0.5, 1.0, 1.5, 2.0, 3.0, 0.2, 0.7, 2.5, 1.8, 1.1, 0.9, 0.4]
B = [1.0, 1.25, 0.8, 1.9, 2.2, 0.3, 1.6, 2.0, 1.0, 1.2, 0.7, 0.5, 1.4, 1.3, 0.95]


def test_wasserstein_matches_scipy_and_a_hand_case():
    assert stats.wasserstein1([0, 1], [0, 1]) == 0
    assert stats.wasserstein1([0], [3]) == 3  # all the mass moves 3
    assert stats.wasserstein1([0, 2], [1]) == 1  # half moves 1 up, half 1 down
    assert stats.wasserstein1(X, Y) == pytest.approx(0.18732142857142856)  # scipy.stats.wasserstein_distance
    assert stats.wasserstein1(A, B) == pytest.approx(0.2783333333333333)
    assert stats.wasserstein1([], [1]) is None


def test_ks_statistic_and_asymptotic_p_match_scipy():
    d, p = stats.ks_2samp(X, Y)
    assert d == pytest.approx(0.3571428571428571)  # scipy.stats.ks_2samp(X, Y).statistic
    assert p == pytest.approx(0.727703558779013)  # scipy.stats.kstwobign.sf(sqrt(8 * 7 / 15) * D)
    d, p = stats.ks_2samp(A, B)
    assert d == pytest.approx(1 / 6)
    assert p == pytest.approx(0.992552262326886)
    assert stats.ks_2samp([1, 2], [1, 2])[0] == 0
    assert stats.ks_2samp([], [1]) == (None, None)


def test_kolmogorov_survival_function_matches_scipy():
    for t, expected in [(0.5, 0.963945244), (1.0, 0.269999672), (1.36, 0.0494858768), (2.0, 6.70925256e-04)]:
        assert stats.kolmogorov_sf(t) == pytest.approx(expected, rel=1e-6)
    assert stats.kolmogorov_sf(0) == 1.0


def test_exact_binomial_matches_scipy_binomtest():
    assert stats.binomial_two_sided(3, 15) == pytest.approx(0.03515625)
    assert stats.binomial_two_sided(5, 12) == pytest.approx(0.7744140625)
    assert stats.binomial_two_sided(0, 3) == pytest.approx(0.25)
    assert stats.binomial_two_sided(1, 9) == pytest.approx(0.0390625)
    assert stats.binomial_two_sided(2, 4) == 1.0  # never above 1
    assert stats.binomial_two_sided(0, 0) == 1.0


def test_sign_test_uses_cluster_means_and_drops_ties():
    a = [5, 1, 2, 2, 0, 7]
    b = [1, 3, 2, 2, 1, 1]
    clusters = ["p", "p", "q", "q", "r", "s"]  # p: mean diff +1; q: 0 (a tie); r: -1; s: +6
    result = stats.sign_test(a, b, clusters)
    assert (result.positive, result.negative, result.ties) == (2, 1, 1)
    assert result.p_value == pytest.approx(1.0)
    assert stats.sign_test([1], [1], ["a"]).p_value is None
    assert stats.sign_test([2] * 9, [1] * 9, list("abcdefghi")).p_value == pytest.approx(2 / 512)


def test_percentile_is_numpy_linear_interpolation():
    values = sorted([3, 1, 4, 1, 5, 9, 2, 6])
    assert stats.percentile(values, 0.025) == pytest.approx(1.0)  # numpy.percentile(values, 2.5)
    assert stats.percentile(values, 0.975) == pytest.approx(8.475)
    assert stats.percentile([7], 0.5) == 7


def test_cluster_bootstrap_is_seeded_and_resamples_whole_clusters():
    values = [1.0, 1.0, 1.0, 10.0, 10.0, 10.0]
    clusters = ["a", "a", "a", "b", "b", "b"]
    first = stats.cluster_bootstrap(values, clusters, resamples=500, seed=3)
    again = stats.cluster_bootstrap(values, clusters, resamples=500, seed=3)
    assert first == again
    assert (first.estimate, first.n, first.clusters) == (5.5, 6, 2)
    # whole clusters: a resample's mean is 1, 5.5 or 10, never a mix like 4
    assert first.low == pytest.approx(1.0) and first.high == pytest.approx(10.0)


def test_cluster_bootstrap_draws_the_clusters_of_a_fresh_seeded_stream():
    """The draws are kept per (clusters, resamples, seed) for the next statistic, and with few clusters a repeated
    draw reuses its value: each resample still draws, cluster by cluster, what Random(seed).randrange would draw
    afresh, in the same order, so the interval is the one a fresh draw gives, whatever came before."""
    import random
    import statistics

    def fresh(values, clusters, statistic, resamples, seed):
        groups = stats._group(values, clusters)
        rng = random.Random(seed)
        draws = []
        for _ in range(resamples):
            result = statistic([v for _ in groups for v in groups[rng.randrange(len(groups))]])
            if result is not None:
                draws.append(result)
        draws.sort()
        tail = (1 - 0.95) / 2
        return stats.percentile(draws, tail), stats.percentile(draws, 1 - tail)

    rng = random.Random(7)
    values = [rng.gauss(0, 1) for _ in range(40)]
    for k in (2, 3, 5, 9):  # few clusters: a repeated draw reuses its value; 9: every draw is computed
        clusters = [rng.randrange(k) for _ in values]
        for statistic in (stats.mean, statistics.median, lambda s: None if len(s) < 20 else max(s) - min(s)):
            for seed in (0, 0, 5):
                got = stats.cluster_bootstrap(values, clusters, statistic, resamples=300, seed=seed)
                assert (got.low, got.high) == fresh(values, clusters, statistic, 300, seed)


def test_cluster_bootstrap_within_one_constant_cluster_each_gives_the_cluster_means_range():
    values = [2.0, 2.0, 4.0, 4.0, 6.0, 6.0]
    interval = stats.cluster_bootstrap(values, [1, 1, 2, 2, 3, 3], resamples=2000, seed=0)
    assert interval.estimate == pytest.approx(4.0)
    assert 2.0 <= interval.low < 4.0 < interval.high <= 6.0


def test_bootstrap_with_one_cluster_or_undefined_statistic_has_no_interval():
    one = stats.cluster_bootstrap([1.0, 2.0], ["a", "a"])
    assert (one.estimate, one.low, one.high, one.clusters) == (1.5, None, None, 1)
    empty = stats.cluster_bootstrap([], [])
    assert empty.estimate is None and empty.n == 0
    assert stats.format_interval(one) == "2 [-]"
    assert stats.format_interval(empty) == "-"


def test_bootstrap_takes_any_statistic_over_pairs():
    pairs = [(1, 2), (2, 4), (3, 6), (4, 8)]
    interval = stats.cluster_bootstrap(pairs, [1, 2, 3, 4], lambda s: sum(y for _, y in s) / sum(x for x, _ in s),
                                       resamples=100)
    assert interval.estimate == interval.low == interval.high == 2.0


def test_paired_difference_is_the_mean_difference_with_its_interval():
    a, b = [3.0, 5.0, 7.0, 9.0], [1.0, 1.0, 1.0, 1.0]
    interval = stats.paired_difference(a, b, ["x", "x", "y", "y"], resamples=300)
    assert interval.estimate == pytest.approx(5.0)
    assert interval.low == pytest.approx(3.0) and interval.high == pytest.approx(7.0)
    with pytest.raises(ValueError):
        stats.paired_difference([1.0], [1.0, 2.0], ["x"])


def test_share_within_ten_percent():
    assert stats.share_within([100, 111, 90, 0, 1], [100, 100, 100, 0, 0]) == pytest.approx(3 / 5)
    assert stats.share_within([], []) is None


def test_few_clusters_note_below_the_threshold_only():
    assert stats.few_clusters_note(3) == ("3 games: an interval over games is not meaningful (fewer than 10; a "
                                          "bootstrap over 3 games can only recombine those 3)")
    assert stats.few_clusters_note(15, "persons") is None
    assert stats.few_clusters_note(4, "sessions", threshold=5).startswith("4 sessions: ")


def test_power_helpers_normal_approximation():
    z = 2.8015852181129683  # scipy.stats.norm.ppf(0.975) + norm.ppf(0.8)
    assert stats.min_detectable_difference(10.0, 16) == pytest.approx(z * 10 / 4)
    # the example: a 4,000 difference with an SD of paired differences near 17,900 needs about 157 owners
    assert stats.clusters_needed(4000, 17_900) == math.ceil((z * 17_900 / 4000) ** 2) == 158
    assert stats.clusters_needed(0, 1.0) is None
    assert stats.min_detectable_difference(1.0, 0) is None


def test_sd_and_cluster_means():
    assert stats.sd([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(2.138089935299395)  # statistics.stdev
    assert stats.sd([1]) is None
    assert stats.cluster_means([1, 3, 10], ["a", "a", "b"]) == [2, 10]
