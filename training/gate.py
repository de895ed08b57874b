"""The champion gate: whether a new model (the challenger) replaces the one being served.

Both are scored per customer on the gate holdout: customers set aside before tuning, whose last
baskets the reported test does not contain (training.split.set_aside_gate). The challenger is
compared with each reference it is given: the champion as served (its item side and blend on the
challenger's histories up to the holdout) and the champion's configuration refit on the
challenger's split. Per context, the paired bootstrap over customers gives both scores and their
difference an interval. The challenger is promoted when

* its data is newer than the champion's and, against every reference, it is not worse beyond the
  `tolerance` on any context with traffic (home, buy-again, discover: a context counts when at
  least MIN_TRAFFIC gate customers have a target in it); or
* it wins: against every reference the interval of the difference on the primary context (home)
  lies above zero, and it is not worse beyond the tolerance on any context with traffic.

"Worse beyond the tolerance" takes the evidence into account: the whole interval of the paired
NDCG@10 difference lies below −`tolerance`. So a retrain on fresher data replaces the champion
unless the gate shows it worse, and a model on data no newer than the champion's replaces it only
when the gate shows it better: noise promotes neither way.

`--promote always|never` overrides the outcome (the reason says so). A pure decision on arrays: the
caller builds the models, scores them (training.pipeline.gating) and moves the aliases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from training.core.blend import CONTEXTS

PROMOTE_CHOICES = ("auto", "always", "never")
GATE_METRIC, GATE_K = "ndcg", 10  # per context: home/ndcg_at_10, buy-again/ndcg_at_10, discover/ndcg_at_10
PRIMARY_CONTEXT = "home"
TOLERANCE = 0.01  # a challenger on newer data may be this much below a reference on a context (NDCG@10)
RESAMPLES = 1_000  # paired bootstrap resamples of the gate customers
LEVEL = 0.95
SEED = 0
MIN_TRAFFIC = 30  # gate customers with a target in a context for the context to count
Scores = Mapping[str, np.ndarray]  # context → per-customer metric (NaN: no target in that context)


@dataclass(frozen=True)
class Comparison:
    """The challenger against one reference on one context, over the customers with a target in it."""

    customers: int
    challenger: float
    challenger_low: float
    challenger_high: float
    reference: float
    reference_low: float
    reference_high: float
    difference: float  # challenger − reference
    difference_low: float
    difference_high: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain numbers for the logged decision."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def paired_bootstrap(
    challenger: np.ndarray, reference: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> Comparison:
    """Means of both arrays and of their difference, each with the `level` percentile interval of
    `resamples` resamples of the customers (the same customers for both: the pairs stay together).
    Customers where either value is NaN are left out."""
    keep = np.isfinite(challenger) & np.isfinite(reference)
    a, b = np.asarray(challenger, dtype=np.float64)[keep], np.asarray(reference, dtype=np.float64)[keep]
    n = len(a)
    if n == 0:
        nan = math.nan
        return Comparison(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means_a, means_b = a[index].mean(axis=1), b[index].mean(axis=1)
    tails = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    low_a, high_a = np.percentile(means_a, tails)
    low_b, high_b = np.percentile(means_b, tails)
    low_d, high_d = np.percentile(means_a - means_b, tails)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return Comparison(
        customers=n,
        challenger=mean_a,
        challenger_low=float(low_a),
        challenger_high=float(high_a),
        reference=mean_b,
        reference_low=float(low_b),
        reference_high=float(high_b),
        difference=mean_a - mean_b,
        difference_low=float(low_d),
        difference_high=float(high_d),
    )


def compare(
    challenger: Scores, reference: Scores, *, resamples: int = RESAMPLES, seed: int = SEED
) -> dict[str, Comparison]:
    """`paired_bootstrap` per context both were scored on."""
    return {
        context: paired_bootstrap(challenger[context], reference[context], resamples=resamples, seed=seed)
        for context in CONTEXTS
        if context in challenger and context in reference
    }


def _signed(value: float) -> str:
    return f"{value:+.4f}".replace("-", "−")


def _interval(c: Comparison) -> str:
    return f"{_signed(c.difference)} ({LEVEL:.0%} interval {_signed(c.difference_low)} to {_signed(c.difference_high)})"


def decide(
    *,
    challenger: Scores | None,
    references: Mapping[str, Scores],
    newer_data: bool | None,
    champion: Mapping[str, Any] | None,
    promote: str,
    data_end: Mapping[str, str | None] | None = None,
    tolerance: float = TOLERANCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    unscored: str = "",
) -> tuple[dict[str, Any], bool]:
    """(the decision as logged, whether the challenger is promoted): see the module docstring.

    `challenger` and each of `references` (e.g. {"champion": …, "champion refit": …}) map contexts
    to per-customer scores on the same gate customers. `champion` is the current champion's
    registry record ({"version", "data_end", …}) or None; `newer_data` whether the challenger's data
    ends later than the champion's (None: unknown, taken as not newer), `data_end` both last days
    ({"challenger", "champion"}: ISO dates, for the reason). `unscored` says why the
    champion could not be scored at all (no reference then). `promote` is one of PROMOTE_CHOICES."""
    decision: dict[str, Any] = {
        "mode": promote,
        "metric": f"{GATE_METRIC}_at_{GATE_K}",
        "tolerance": tolerance,
        "resamples": resamples,
        "level": LEVEL,
        "seed": seed,
        "min_traffic": MIN_TRAFFIC,
        "champion_version": None if champion is None else champion.get("version"),
        "newer_data": newer_data,
        "data_end": dict(data_end or {}),
        "comparisons": {},
        "contexts": [],
        "rule": None,
    }
    better = False
    if champion is None:
        reason = "no champion yet"
        better = True
    elif not references or challenger is None:
        why = unscored or "no reference"
        reason = f"the champion (version {champion.get('version')}) cannot be scored here ({why})"
    else:
        comparisons = {
            ref: compare(challenger, scores, resamples=resamples, seed=seed) for ref, scores in references.items()
        }
        decision["comparisons"] = {ref: {c: v.to_dict() for c, v in by.items()} for ref, by in comparisons.items()}
        # The contexts each reference is judged on: those with traffic among the customers it was scored on.
        usable = {
            ref: [c for c in CONTEXTS if c in by and by[c].customers >= MIN_TRAFFIC] for ref, by in comparisons.items()
        }
        decision["contexts"] = {ref: contexts for ref, contexts in usable.items()}
        judged = {ref: by for ref, by in comparisons.items() if usable[ref]}
        worse = [
            (ref, c, by[c])
            for ref, by in judged.items()
            for c in usable[ref]
            if not by[c].difference_high >= -tolerance
        ]
        wins = {
            ref: PRIMARY_CONTEXT in usable[ref] and by[PRIMARY_CONTEXT].difference_low > 0 for ref, by in judged.items()
        }
        names = " and ".join(f"the {ref}" for ref in judged)
        contexts = sorted({c for ref in judged for c in usable[ref]}, key=CONTEXTS.index)
        ends = data_end or {}
        dates = f" (to {ends.get('challenger')} against {ends.get('champion')})" if ends.get("challenger") else ""
        if not judged:
            reason = (
                f"too few gate customers to compare with the champion: no context has {MIN_TRAFFIC} with a target"
                f"{' (' + unscored + ')' if unscored else ''}"
            )
        elif worse:
            ref, context, c = worse[0]
            reason = f"worse than the {ref} on {context} beyond the tolerance {tolerance}: {_interval(c)}"
        elif all(wins.values()):
            decision["rule"] = "win beyond the interval"
            shown = "; ".join(f"{_interval(judged[ref][PRIMARY_CONTEXT])} against the {ref}" for ref in judged)
            reason = f"wins on {PRIMARY_CONTEXT}: {shown}; not worse beyond the tolerance {tolerance} elsewhere"
            better = True
        elif newer_data:
            decision["rule"] = "newer data within tolerance"
            reason = (
                f"newer data than the champion's{dates} and not worse than {names} beyond the tolerance "
                f"{tolerance} on {', '.join(contexts)}"
            )
            better = True
        else:
            ref = next(r for r, won in wins.items() if not won)
            age = "not newer than" if newer_data is False else "of unknown age against"
            against = (
                f"{_interval(judged[ref][PRIMARY_CONTEXT])}"
                if PRIMARY_CONTEXT in usable[ref]
                else f"too few customers on {PRIMARY_CONTEXT}"
            )
            reason = (
                f"data {age} the champion's{dates}, and no win beyond the interval on {PRIMARY_CONTEXT} against "
                f"the {ref}: {against}"
            )
        if unscored and judged:
            reason += f" ({unscored})"
    promoted = promote == "always" or (promote == "auto" and better)
    if promote != "auto":
        reason = f"--promote {promote} ({reason})"
    decision["reason"] = reason
    decision["promoted"] = promoted
    return decision, promoted
