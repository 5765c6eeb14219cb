"""Fits the games' fitted and empirical rules share (lib/games/voting/fitted.py and empirical.py, lib/games/market/
fitted.py): a one-parameter scale fitted by least absolute error, and monotone step functions by isotonic regression
(pool adjacent violators). Pure functions, standard library only; nothing here knows about games."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence


def fit_scale(observed: Sequence[float], targets: Sequence[float], caps: Sequence[float], default: float) -> float:
    """The s >= 0 minimising sum |observed - min(s * target, cap)| (targets > 0, caps >= 0); `default` without data.

    Each term is piecewise linear in s, with breakpoints at observed/target (where the prediction meets the
    observation) and cap/target (where the cap starts to bind), so the sum is minimal at one of them: sweep them in
    order, keeping the sum's value and slope.
    """
    events: list[tuple[float, float]] = []  # (s, change of slope there)
    value, slope = 0.0, 0.0  # the sum at s = 0, and its slope just after
    for o, t, m in zip(observed, targets, caps, strict=True):
        if t <= 0:
            continue
        value += abs(o)
        knee = m / t
        if o <= 0:  # the prediction moves away from the observation from the start
            slope += t
            events.append((knee, -t))
        elif o < m:  # towards it, then past it, then the cap holds it still
            slope -= t
            events += [(o / t, 2 * t), (knee, -t)]
        else:  # towards it until the cap holds it below
            slope -= t
            events.append((knee, t))
    if not events:
        return default
    events.sort()
    points = [(0.0, value, slope)]  # (s, the sum there, its slope just after)
    position = 0.0
    for s, change in events:
        value += slope * (s - position)
        position, slope = s, slope + change
        points.append((s, value, slope))
    low = min(v for _, v, _ in points)
    tolerance = 1e-9 * max(1.0, abs(low))
    optimal = []  # intervals [a, b] where the sum is minimal
    for i, (s, v, after) in enumerate(points):
        if v - low <= tolerance:
            flat = abs(after) <= 1e-9
            optimal.append((s, (points[i + 1][0] if i + 1 < len(points) else math.inf) if flat else s))
    return min((min(max(default, a), b) for a, b in optimal), key=lambda s: abs(s - default))




def isotonic_steps(points: Iterable[tuple[float, int]], increasing: bool = True) -> list[tuple[float, float]]:
    """(x, outcome 0/1) -> [(start x of a block, its share of 1s)], a monotone step function (non-decreasing, or
    non-increasing when `increasing` is False) that is the least-squares and maximum-likelihood fit to the points."""
    grouped: dict[float, list[float]] = {}
    for x, y in points:
        entry = grouped.setdefault(float(x), [0.0, 0.0])
        entry[0] += y
        entry[1] += 1
    sign = 1 if increasing else -1
    blocks: list[list[float]] = []  # [start x, sum of outcomes, count]
    for x in sorted(grouped):
        blocks.append([x, grouped[x][0], grouped[x][1]])
        # equal neighbours are pooled too, so that each step is a change of the share
        while len(blocks) > 1 and sign * (blocks[-2][1] / blocks[-2][2]) >= sign * (blocks[-1][1] / blocks[-1][2]):
            last = blocks.pop()
            blocks[-1][1] += last[1]
            blocks[-1][2] += last[2]
    return [(x, total / count) for x, total, count in blocks]


def step_value(steps: Sequence[tuple[float, float]], x: float) -> float:
    """The step function at x: the block x falls in; below the first block's start, the first block's value."""
    i = bisect_right([s for s, _ in steps], x) - 1
    return steps[max(i, 0)][1]
