"""The champion gate: a new model becomes @champion only when it beats the current one on the same holdout.

The champion's configuration is refit on the new model's split and scored on the same test
customers, so both scores measure the same thing; `--promote always|never` overrides the outcome
(the reason says so). A pure decision: the caller fits and scores, and moves the aliases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from training.algorithms import MODELS
from training.metrics import PRIMARY_METRIC

PROMOTE_CHOICES = ("auto", "always", "never")


def decide(
    *,
    new_score: float,
    model: str,
    params: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    promote: str,
    score_champion: Callable[[str, Mapping[str, Any]], float],
) -> tuple[dict[str, Any], bool]:
    """(the decision as logged, whether the new model is promoted) for a new model of `new_score`.

    `champion` is the current champion's registry record (its version, model and params) or None.
    `score_champion(model, params)` scores the champion's configuration refit on the same split; it
    is called only when that configuration differs from the new one and this trainer knows its
    model (a champion of an unknown model scores −inf). `promote` is one of PROMOTE_CHOICES: auto
    promotes only a model that beats the champion (or the first model), always and never override."""
    decision: dict[str, Any] = {"primary_metric": PRIMARY_METRIC, "new_score": new_score, "mode": promote}
    if champion is None:
        decision.update(champion_version=None, champion_score=None, reason="no champion yet")
        promoted = promote != "never"
    else:
        decision["champion_version"] = champion["version"]
        same = champion["model"] == model and champion["params"] == params
        if same:
            champion_score = new_score
        elif champion["model"] in MODELS:
            champion_score = score_champion(champion["model"], champion["params"])
        else:
            champion_score = -math.inf
        decision["champion_score"] = champion_score
        better = new_score > champion_score + 1e-9
        decision["reason"] = (
            "same configuration as the champion"
            if same
            else ("beats the champion" if better else "does not beat the champion")
        )
        promoted = promote == "always" or (promote == "auto" and better)
    if promote == "always":
        decision["reason"] = f"--promote always ({decision['reason']})"
    elif promote == "never":
        decision["reason"] = f"--promote never ({decision['reason']})"
    return decision, promoted
