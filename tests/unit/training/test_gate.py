"""The champion gate's decision on known scores: the first model, a better, a worse and the same
configuration, a champion of a model this trainer does not know, and --promote always / never."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from training.gate import decide

CHAMPION = {"version": "3", "model": "als", "params": {"factors": "32"}}


def _decide(
    new_score: float, champion: Mapping[str, Any] | None, promote: str = "auto", champion_score: float = 0.5
) -> tuple[dict[str, Any], bool, list[tuple[str, Mapping[str, Any]]]]:
    """decide() for a hybrid without params; returns (decision, promoted, the configurations scored)."""
    scored: list[tuple[str, Mapping[str, Any]]] = []

    def score_champion(model: str, params: Mapping[str, Any]) -> float:
        scored.append((model, params))
        return champion_score

    decision, promoted = decide(
        new_score=new_score,
        model="hybrid",
        params={},
        champion=champion,
        promote=promote,
        score_champion=score_champion,
    )
    return decision, promoted, scored


def test_the_first_model_is_promoted_unless_never() -> None:
    decision, promoted, scored = _decide(0.4, None)
    assert promoted is True and scored == []
    assert decision == {
        "primary_metric": "home/ndcg_at_10",
        "new_score": 0.4,
        "mode": "auto",
        "champion_version": None,
        "champion_score": None,
        "reason": "no champion yet",
    }
    decision, promoted, _ = _decide(0.4, None, promote="never")
    assert promoted is False and decision["reason"] == "--promote never (no champion yet)"


def test_a_model_is_promoted_only_when_it_beats_the_champions_configuration_refit() -> None:
    decision, promoted, scored = _decide(0.6, CHAMPION, champion_score=0.5)
    assert promoted is True and decision["reason"] == "beats the champion"
    assert scored == [("als", {"factors": "32"})]  # the champion's own configuration
    assert decision["champion_version"] == "3" and decision["champion_score"] == 0.5
    decision, promoted, _ = _decide(0.5, CHAMPION, champion_score=0.5)  # a tie does not beat
    assert promoted is False and decision["reason"] == "does not beat the champion"
    assert list(decision) == ["primary_metric", "new_score", "mode", "champion_version", "champion_score", "reason"]


@pytest.mark.parametrize(
    ("promote", "promoted", "reason"),
    [
        ("auto", False, "does not beat the champion"),
        ("always", True, "--promote always (does not beat the champion)"),
        ("never", False, "--promote never (does not beat the champion)"),
    ],
)
def test_promote_mode_overrides_the_outcome_and_says_so(promote: str, promoted: bool, reason: str) -> None:
    decision, got, _ = _decide(0.3, CHAMPION, promote=promote, champion_score=0.5)
    assert got is promoted and decision["reason"] == reason and decision["mode"] == promote


def test_the_same_configuration_is_not_refit_and_not_promoted() -> None:
    same = {"version": "3", "model": "hybrid", "params": {}}
    decision, promoted, scored = _decide(0.6, same)
    assert scored == [] and promoted is False
    assert decision["champion_score"] == 0.6 and decision["reason"] == "same configuration as the champion"


def test_a_champion_of_an_unknown_model_is_beaten_without_refitting() -> None:
    decision, promoted, scored = _decide(0.1, {"version": "1", "model": "deep-magic", "params": {}})
    assert scored == [] and promoted is True
    assert decision["champion_score"] == -math.inf and decision["reason"] == "beats the champion"
