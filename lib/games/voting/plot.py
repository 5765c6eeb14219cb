"""evaluation.png of `finetune.py --evaluate` (lib.games.voting.scores): the humans' decisions beside each policy's,
on the same examples.

Three panels: each owner's compensation request against its loss from the Project (v_noProject - v_project), the
developer's offer against its break-even offer ((v_project - v_noProject) / 5), and each policy's agreement with the
human votes, with the majority-class reference. Examples whose private values are unknown have no place on the first
two panels and are left out of them (they are still scored).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib.dataset.sidecar import Example
from lib.evaluation.scores import Decision
from lib.games.voting.actions import DECISION, OFFER, REQUEST
from lib.games.voting.kinds import KINDS
from lib.games.voting.rules import OWNER_SEATS
from lib.ibex.params import NO_PROJECT, PROJECT

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _x(example: Example) -> float | None:
    values = example.state["view"]["current"].get("values")
    if not (isinstance(values, list) and len(values) >= 2):
        return None
    if example.action == REQUEST:
        return values[NO_PROJECT] - values[PROJECT]
    return (values[PROJECT] - values[NO_PROJECT]) / len(OWNER_SEATS)


def _amount_panel(ax: Any, action: str, examples: Sequence[Example], decisions: dict[str, list[Decision]],
                  xlabel: str) -> None:
    kind = KINDS[action]
    rows = [(i, e, _x(e)) for i, e in enumerate(examples) if e.action == action]
    rows = [(i, e, x) for i, e, x in rows if x is not None]
    ax.set_title(f"{kind.label} (n={len(rows)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("amount")
    if not rows:
        ax.text(0.5, 0.5, "no examples with known values", ha="center", va="center", transform=ax.transAxes)
        return
    xs = [x for _, _, x in rows]
    ax.scatter(xs, [kind.value(e.human) for _, e, _ in rows], s=28, color="black", label="humans", zorder=3)
    for k, (name, ds) in enumerate(decisions.items()):
        points = [(x, kind.value(ds[i].action)) for i, _, x in rows if ds[i].action is not None]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], s=22, marker=MARKERS[(k + 1) % len(MARKERS)],
                       alpha=0.7, label=name)
    low, high = min(0, min(xs)), max(xs)
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle=":", label="y = x")
    ax.legend(fontsize=7)


def draw(path: Path, examples: Sequence[Example], decisions: dict[str, list[Decision]],
         scores: dict[str, dict[str, dict[str, Any]]], refs: dict[str, dict[str, Any]], title: str,
         uncertainty: dict[str, Any] | None = None) -> None:
    """Write the picture to `path` (PNG). The caller makes the write atomic. With `uncertainty`
    (lib.games.voting.fidelity),
    the vote agreements carry their 95 % intervals over persons."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is all we want
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    _amount_panel(axes[0], REQUEST, examples, decisions, "owner's loss from the Project")
    _amount_panel(axes[1], OFFER, examples, decisions, "developer's break-even offer (gain / 5)")
    ax = axes[2]
    names = [name for name in scores if DECISION in scores[name]]
    agreements = [scores[name][DECISION]["agreement"] or 0.0 for name in names]
    n = refs[DECISION]["n"] if DECISION in refs else 0
    ax.set_title(f"votes: agreement with the humans (n={n})\nbars: 95 % interval over persons", fontsize=10)
    if names:
        yerr = None
        spans = [((uncertainty or {}).get("policies", {}).get(name, {}).get(DECISION, {}).get("agreement") or {})
                 .get("persons", {}) for name in names]
        if spans and all(span.get("low") is not None for span in spans):
            # the report's intervals are rounded: never a negative error bar
            yerr = [[max(0.0, a - span["low"]) for a, span in zip(agreements, spans, strict=True)],
                    [max(0.0, span["high"] - a) for a, span in zip(agreements, spans, strict=True)]]
        bars = ax.bar(names, agreements, color="tab:blue", yerr=yerr, capsize=4)
        for bar, value in zip(bars, agreements, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    if DECISION in refs:
        ax.axhline(refs[DECISION]["agreement"], color="grey", linestyle="--", label="majority class (hindsight)")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("agreement")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
