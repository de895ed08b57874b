"""The champion gate's decision on known per-customer scores: the paired bootstrap, the first model,
a retrain on newer data, noise on data no newer, a clear win, a worse context, contexts and
references without traffic, a champion that cannot be scored, and --promote always / never."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from training.gate import MIN_TRAFFIC, TOLERANCE, decide, paired_bootstrap

N = 600
CHAMPION = {"version": "3"}


def _scores(level: float, *, seed: int, spread: float = 0.3, n: int = N) -> np.ndarray:
    """Per-customer NDCG-like values around `level` (clipped to [0, 1])."""
    return np.clip(np.random.default_rng(seed).normal(level, spread, n), 0, 1)


def _model(home: float, buy_again: float, discover: float, *, seed: int = 1) -> dict[str, np.ndarray]:
    return {
        "home": _scores(home, seed=seed),
        "buy-again": _scores(buy_again, seed=seed + 1),
        "discover": _scores(discover, seed=seed + 2, spread=0.1),
    }


def _shifted(base: dict[str, np.ndarray], **shift: float) -> dict[str, np.ndarray]:
    """`base` with per-context shifts (the same customers: a paired comparison) and a little noise."""
    rng = np.random.default_rng(99)
    return {c: v + shift.get(c.replace("-", "_"), 0.0) + rng.normal(0, 0.002, len(v)) for c, v in base.items()}


def _decide(challenger: Any, references: Any, *, newer: bool | None, promote: str = "auto", **kw: Any) -> Any:
    return decide(
        challenger=challenger,
        references=references,
        newer_data=newer,
        champion=CHAMPION,
        promote=promote,
        data_end={"challenger": "2025-12-31", "champion": "2025-10-31"},
        **kw,
    )


def test_paired_bootstrap_keeps_pairs_together_and_is_reproducible() -> None:
    a = _scores(0.5, seed=3)
    same = paired_bootstrap(a, a)
    assert same.difference == 0 and same.difference_low == 0 and same.difference_high == 0
    assert same.challenger_low < same.challenger < same.challenger_high
    shifted = paired_bootstrap(a + 0.02, a)
    assert shifted.difference == pytest.approx(0.02)
    assert shifted.difference_low == pytest.approx(0.02) and shifted.difference_high == pytest.approx(0.02)
    # Unpaired, the means' own intervals overlap; paired, the difference is exact.
    assert shifted.challenger_low < shifted.reference_high
    b = _scores(0.5, seed=4)
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)  # seeded
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b, seed=2)
    with_gaps = a.copy()
    with_gaps[:100] = np.nan
    assert paired_bootstrap(with_gaps, b).customers == N - 100
    narrow = paired_bootstrap(_scores(0.5, seed=5, n=20_000), _scores(0.5, seed=6, n=20_000))
    wide = paired_bootstrap(_scores(0.5, seed=5, n=200), _scores(0.5, seed=6, n=200))
    assert narrow.difference_high - narrow.difference_low < wide.difference_high - wide.difference_low


def test_the_first_model_is_promoted_unless_never() -> None:
    decision, promoted = decide(challenger=None, references={}, newer_data=None, champion=None, promote="auto")
    assert promoted is True and decision["reason"] == "no champion yet" and decision["promoted"] is True
    decision, promoted = decide(challenger=None, references={}, newer_data=None, champion=None, promote="never")
    assert promoted is False and decision["reason"] == "--promote never (no champion yet)"


def test_a_retrain_on_newer_data_within_tolerance_is_promoted() -> None:
    champion = _model(0.58, 0.83, 0.10)
    challenger = _shifted(champion, home=-0.003, discover=-0.004)  # a little worse, within the tolerance
    decision, promoted = _decide(challenger, {"champion": champion}, newer=True)
    assert promoted is True and decision["rule"] == "newer data within tolerance"
    assert decision["reason"].startswith("newer data than the champion's (to 2025-12-31 against 2025-10-31)")
    assert decision["contexts"] == {"champion": ["home", "buy-again", "discover"]}
    home = decision["comparisons"]["champion"]["home"]
    assert home["customers"] == N and home["difference_low"] < home["difference"] < home["difference_high"]
    assert {"challenger", "challenger_low", "challenger_high", "reference", "reference_low", "reference_high"} <= set(
        home
    )


def test_noise_on_data_no_newer_is_not_promoted() -> None:
    champion = _model(0.5829, 0.83, 0.10)
    noisy = {c: v + np.random.default_rng(7).normal(0.0002, 0.03, len(v)) for c, v in champion.items()}
    decision, promoted = _decide(noisy, {"champion refit": champion}, newer=False)
    assert promoted is False and decision["rule"] is None
    assert decision["reason"].startswith("data not newer than the champion's")
    assert "no win beyond the interval on home against the champion refit" in decision["reason"]
    # The same challenger on newer data would be promoted: only the data's age differs.
    assert _decide(noisy, {"champion refit": champion}, newer=True)[1] is True


def test_a_win_beyond_the_interval_is_promoted_whatever_the_data_age() -> None:
    champion = _model(0.50, 0.80, 0.10)
    better = _shifted(champion, home=0.02)
    decision, promoted = _decide(better, {"champion": champion, "champion refit": champion}, newer=False)
    assert promoted is True and decision["rule"] == "win beyond the interval"
    assert "against the champion;" in decision["reason"] and "against the champion refit" in decision["reason"]
    # It must win against every reference: a refit it does not beat keeps the champion.
    _, promoted = _decide(better, {"champion": champion, "champion refit": better}, newer=False)
    assert promoted is False


@pytest.mark.parametrize("newer", [True, False])
def test_worse_beyond_the_tolerance_on_any_context_is_not_promoted(newer: bool) -> None:
    champion = _model(0.50, 0.80, 0.10)
    challenger = _shifted(champion, home=0.03, discover=-3 * TOLERANCE)  # wins home, loses discover
    decision, promoted = _decide(challenger, {"champion": champion}, newer=newer)
    assert promoted is False
    assert decision["reason"].startswith(f"worse than the champion on discover beyond the tolerance {TOLERANCE}")


def test_worse_means_the_whole_interval_is_below_the_tolerance() -> None:
    """A mean just past the tolerance whose interval reaches back within it is not evidence of worse."""
    champion = _model(0.50, 0.80, 0.10)
    noisy = {c: v + np.random.default_rng(8).normal(-TOLERANCE - 0.002, 0.2, len(v)) for c, v in champion.items()}
    decision, promoted = _decide(noisy, {"champion": champion}, newer=True)
    home = decision["comparisons"]["champion"]["home"]
    assert home["difference"] < -TOLERANCE < home["difference_high"]
    assert promoted is True


def test_contexts_and_references_without_traffic_are_not_judged() -> None:
    champion = _model(0.50, 0.80, 0.10)
    challenger = _shifted(champion, home=-0.001)
    challenger["discover"][MIN_TRAFFIC - 1 :] = np.nan  # discover: too few customers with a target
    challenger["discover"][: MIN_TRAFFIC - 1] = 0.0  # and terrible where it has one
    served = {c: np.full(N, np.nan) for c in champion}  # the served champion has seen every gate basket
    decision, promoted = _decide(challenger, {"champion": served, "champion refit": champion}, newer=True)
    assert promoted is True
    assert decision["contexts"] == {"champion": [], "champion refit": ["home", "buy-again"]}
    assert "not worse than the champion refit beyond" in decision["reason"]
    decision, promoted = _decide(challenger, {"champion": served}, newer=True, unscored="it has seen them all")
    assert promoted is False and decision["reason"].startswith("too few gate customers to compare with the champion")
    assert "(it has seen them all)" in decision["reason"]


def test_a_champion_that_cannot_be_scored_is_kept_unless_always() -> None:
    challenger = _model(0.5, 0.8, 0.1)
    decision, promoted = _decide(challenger, {}, newer=True, unscored="its model did not load: bad format")
    assert promoted is False
    assert decision["reason"] == "the champion (version 3) cannot be scored here (its model did not load: bad format)"
    decision, promoted = _decide(challenger, {}, newer=True, promote="always", unscored="gone")
    assert (
        promoted is True
        and decision["reason"] == "--promote always (the champion (version 3) cannot be scored here (gone))"
    )


@pytest.mark.parametrize(("promote", "promoted"), [("always", True), ("never", False)])
def test_promote_mode_overrides_the_outcome_and_says_so(promote: str, promoted: bool) -> None:
    champion = _model(0.50, 0.80, 0.10)
    worse = _shifted(champion, home=-0.2)
    decision, got = _decide(worse, {"champion": champion}, newer=True, promote=promote)
    assert got is promoted and decision["mode"] == promote
    assert decision["reason"].startswith(f"--promote {promote} (worse than the champion on home")
    better = _shifted(champion, home=0.2)
    decision, got = _decide(better, {"champion": champion}, newer=True, promote=promote)
    assert got is promoted and decision["reason"].startswith(f"--promote {promote} (wins on home")
