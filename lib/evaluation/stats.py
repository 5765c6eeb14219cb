"""Honest uncertainty for small, clustered samples. Pure functions, standard library only.

Nothing here knows about games or actions: a sample is a list of values, each with a cluster label (a person, i.e. a
seat in a game; a game; a session). Decisions of one person are not independent of each other, so every interval
resamples whole clusters, never single values, and says how many clusters it rests on. The studies (#23) reuse it
for whole-game outcomes, where a cluster is simply a game.

- `cluster_bootstrap`: a seeded percentile bootstrap interval of any statistic, resampling whole clusters.
- `paired_difference`: the mean of a - b over the same observations (two policies, or a policy and a reference),
  with the same cluster bootstrap.
- `sign_test`: the exact two-sided sign test on per-cluster mean differences; clusters whose mean difference is 0
  are dropped (the result says how many).
- `wasserstein1`, `ks_2samp`: distances between two samples' distributions. The KS p-value is the asymptotic
  Kolmogorov one for independent samples: with clustered data (several decisions per person) it is too small, so it
  is an approximate, optimistic figure, not a test to quote.
- `share_within`: the share of observations within a relative tolerance (10 %) of the reference value.
- `few_clusters_note`: the sentence to print when there are too few clusters (fewer than `MIN_CLUSTERS`) for a
  bootstrap over them to mean anything: with 3 games, a resample draws one of only 10 multisets of games.
- `min_detectable_difference`, `clusters_needed`: normal-approximation power for a paired mean difference, from the
  SD of the per-cluster differences, so the docs can say what a number of sessions can and cannot show.

A statistic that is undefined (no data, a constant side) is None, never NaN.
"""

from __future__ import annotations

import functools
import math
import random
from array import array
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from itertools import chain
from statistics import NormalDist
from typing import Any

MIN_CLUSTERS = 10  # below this, an interval over clusters is too coarse to quote (see few_clusters_note)
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
TOLERANCE = 0.10


@dataclass(frozen=True)
class Interval:
    """An estimate with its percentile bootstrap interval over `clusters` clusters (`n` observations)."""

    estimate: float | None
    low: float | None
    high: float | None
    n: int
    clusters: int
    level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SignTest:
    """Clusters where a > b (positive), a < b (negative), equal (ties, dropped), and the exact two-sided p."""

    positive: int
    negative: int
    ties: int
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group(values: Sequence[Any], clusters: Sequence[Hashable]) -> list[list[Any]]:
    if len(values) != len(clusters):
        raise ValueError(f"{len(values)} values but {len(clusters)} cluster labels")
    groups: dict[Hashable, list[Any]] = {}
    for value, cluster in zip(values, clusters, strict=True):
        groups.setdefault(cluster, []).append(value)
    return list(groups.values())


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between order statistics (numpy's default, type 7)."""
    if not sorted_values:
        raise ValueError("no values")
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (position - below)


@functools.lru_cache(maxsize=32)
def _resample_indices(clusters: int, resamples: int, seed: int) -> tuple[array, ...]:
    """The clusters each resample draws, in order: they depend on the number of clusters, resamples and seed only,
    so an evaluation's dozens of statistics over the same persons or games draw them once. The same random stream,
    draw for draw, as drawing them afresh for each statistic (Random(seed).randrange(clusters), clusters times per
    resample)."""
    rng = random.Random(seed)
    return tuple(array("I", [rng.randrange(clusters) for _ in range(clusters)]) for _ in range(resamples))


def cluster_bootstrap(values: Sequence[Any], clusters: Sequence[Hashable],
                      statistic: Callable[[list[Any]], float | None] = mean, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED, level: float = 0.95) -> Interval:
    """The statistic of `values` and its percentile interval, resampling whole clusters with replacement.

    Values may be anything the statistic takes (numbers, or (human, policy) pairs for a correlation). Resamples on
    which the statistic is undefined (None) are left out of the percentiles; with no cluster, or fewer than two,
    the interval is None (one cluster resampled is always itself). The statistic must be a function of the sample
    alone: with few clusters, a resample that draws the same clusters in the same order as an earlier one (the
    same sample) takes that one's value instead of computing it again.
    """
    groups = _group(values, clusters)
    estimate = statistic(list(values)) if values else None
    if estimate is None or len(groups) < 2:
        return Interval(estimate, None, None, len(values), len(groups), level)
    # Few clusters have few distinct ordered draws (2 clusters: 4; 4 clusters: 256), and an evaluation's intervals
    # over a handful of games or persons would compute each of them hundreds of times. Beyond 5 clusters (5^5 =
    # 3,125 draws) repeats are too rare to keep.
    known: dict[bytes, float | None] | None = {} if len(groups) ** len(groups) <= 4 * resamples else None
    draws = []
    for drawn in _resample_indices(len(groups), resamples, seed):
        if known is None:
            result = statistic(list(chain.from_iterable(map(groups.__getitem__, drawn))))
        else:
            key = drawn.tobytes()
            if key in known:
                result = known[key]
            else:
                result = known[key] = statistic(list(chain.from_iterable(map(groups.__getitem__, drawn))))
        if result is not None:
            draws.append(result)
    if not draws:
        return Interval(estimate, None, None, len(values), len(groups), level)
    draws.sort()
    tail = (1 - level) / 2
    return Interval(estimate, percentile(draws, tail), percentile(draws, 1 - tail), len(values), len(groups), level)


def paired_difference(a: Sequence[float], b: Sequence[float], clusters: Sequence[Hashable],
                      resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, level: float = 0.95) -> Interval:
    """Mean of a_i - b_i over the same observations, with its cluster bootstrap interval (negative: a is lower)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    return cluster_bootstrap([x - y for x, y in zip(a, b, strict=True)], clusters, mean, resamples, seed, level)


def cluster_means(values: Sequence[float], clusters: Sequence[Hashable]) -> list[float]:
    """One mean per cluster, in the order clusters first appear."""
    return [sum(g) / len(g) for g in _group(values, clusters)]


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair trials: twice the smaller tail, at most 1."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(low + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def sign_test(a: Sequence[float], b: Sequence[float], clusters: Sequence[Hashable]) -> SignTest:
    """Exact two-sided sign test of per-cluster mean(a - b); clusters with a zero mean difference are ties, dropped.
    p is None when no cluster is left."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    diffs = cluster_means([x - y for x, y in zip(a, b, strict=True)], clusters)
    positive = sum(d > 0 for d in diffs)
    negative = sum(d < 0 for d in diffs)
    ties = len(diffs) - positive - negative
    n = positive + negative
    return SignTest(positive, negative, ties, binomial_two_sided(positive, n) if n else None)


def wasserstein1(x: Sequence[float], y: Sequence[float]) -> float | None:
    """The first Wasserstein (earth mover's) distance between the two samples' empirical distributions: the area
    between their CDFs, in the values' unit. None when either sample is empty."""
    if not x or not y:
        return None
    xs, ys = sorted(x), sorted(y)
    points = sorted(set(xs) | set(ys))
    total, i, j = 0.0, 0, 0
    for left, right in zip(points, points[1:], strict=False):
        while i < len(xs) and xs[i] <= left:
            i += 1
        while j < len(ys) and ys[j] <= left:
            j += 1
        total += abs(i / len(xs) - j / len(ys)) * (right - left)
    return total


def kolmogorov_sf(statistic: float) -> float:
    """P(K > statistic) for the Kolmogorov distribution: 2 sum (-1)^(k-1) exp(-2 k^2 t^2)."""
    if statistic <= 0:
        return 1.0
    if statistic < 0.2:  # the alternating series converges slowly here, and the tail is 1 to many digits
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = (-1) ** (k - 1) * math.exp(-2 * k * k * statistic * statistic)
        total += term
        if abs(term) < 1e-16:
            break
    return max(0.0, min(1.0, 2 * total))


def ks_2samp(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | tuple[None, None]:
    """(D, approximate p): D is the largest gap between the two empirical CDFs; p is the asymptotic Kolmogorov
    p-value, the limiting Kolmogorov distribution at sqrt(n m / (n + m)) D (scipy.stats.kstwobign.sf of it), for
    independent observations. Decisions clustered by person
    are not independent, so for them p is optimistic (too small): report D, treat p as a rough guide."""
    if not x or not y:
        return None, None
    xs, ys = sorted(x), sorted(y)
    d, i, j = 0.0, 0, 0
    for point in sorted(set(xs) | set(ys)):
        while i < len(xs) and xs[i] <= point:
            i += 1
        while j < len(ys) and ys[j] <= point:
            j += 1
        d = max(d, abs(i / len(xs) - j / len(ys)))
    en = math.sqrt(len(xs) * len(ys) / (len(xs) + len(ys)))
    return d, kolmogorov_sf(en * d)


def share_within(values: Sequence[float], references: Sequence[float], tolerance: float = TOLERANCE) -> float | None:
    """Share of values within tolerance x |reference| of their reference (a zero reference needs an exact match)."""
    if len(values) != len(references):
        raise ValueError(f"{len(values)} values but {len(references)} references")
    if not values:
        return None
    return sum(abs(v - r) <= tolerance * abs(r) for v, r in zip(values, references, strict=True)) / len(values)


def few_clusters_note(clusters: int, what: str = "games", threshold: int = MIN_CLUSTERS) -> str | None:
    """A sentence for the output when there are too few clusters for an interval over them; None when enough."""
    if clusters >= threshold:
        return None
    return (f"{clusters} {what}: an interval over {what} is not meaningful (fewer than {threshold}; a bootstrap over "
            f"{clusters} {what} can only recombine those {clusters})")


def _z(alpha: float, power: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)


def min_detectable_difference(sd: float, clusters: int, alpha: float = 0.05, power: float = 0.80) -> float | None:
    """The smallest true mean paired difference a two-sided test at `alpha` detects with `power`, from the SD of the
    per-cluster differences and the number of clusters (normal approximation: (z_{1-a/2} + z_power) sd / sqrt(n))."""
    if clusters < 1:
        return None
    return _z(alpha, power) * sd / math.sqrt(clusters)


def clusters_needed(difference: float, sd: float, alpha: float = 0.05, power: float = 0.80) -> int | None:
    """Clusters needed to detect a true mean paired difference with `power` (normal approximation); None for 0."""
    if difference == 0:
        return None
    return math.ceil((_z(alpha, power) * sd / abs(difference)) ** 2)


def sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None with fewer than two values."""
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def format_interval(interval: Interval, fmt: Callable[[float], str] = lambda v: f"{v:,.0f}") -> str:
    """'80,298 [72,000, 88,000]', or with '-' for what is undefined."""
    if interval.estimate is None:
        return "-"
    if interval.low is None or interval.high is None:
        return f"{fmt(interval.estimate)} [-]"
    return f"{fmt(interval.estimate)} [{fmt(interval.low)}, {fmt(interval.high)}]"
