"""Ranking metrics against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import ranking_metrics


def test_ranking_metrics_match_hand_computed_values() -> None:
    # Customer 0: targets {1, 3}; ranked [1, 2, 3]: hits at ranks 1 and 3.
    # Customer 1: target {4}; ranked [0, 2, 3]: no hit.  Customer 2: no target → not counted.
    top = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 2]])
    targets = np.zeros((3, 5), dtype=bool)
    targets[0, [1, 3]] = True
    targets[1, 4] = True
    m = ranking_metrics(top=top, targets=targets, k=3)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg"][0] == pytest.approx(dcg / idcg)
    assert m["recall"][0] == pytest.approx(1.0)
    assert m["precision"][0] == pytest.approx(2 / 3)
    assert m["map"][0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["hit_rate"][0] == 1.0
    assert m["ndcg"][1] == 0.0 and m["hit_rate"][1] == 0.0 and m["recall"][1] == 0.0
    assert all(math.isnan(v[2]) for v in m.values())


def test_ranking_metrics_ignore_padding_and_cut_at_k() -> None:
    top = np.array([[-1, 2, 0]])  # −1: the list was shorter than k
    targets = np.zeros((1, 3), dtype=bool)
    targets[0, 0] = True
    at2 = ranking_metrics(top=top, targets=targets, k=2)
    at3 = ranking_metrics(top=top, targets=targets, k=3)
    assert at2["hit_rate"][0] == 0.0
    assert at3["ndcg"][0] == pytest.approx(1 / math.log2(4))
