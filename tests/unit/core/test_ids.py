"""IdLookup answers as the dict it replaces would, sorted ids or not."""

from __future__ import annotations

import numpy as np
import pytest

from training.core.ids import IdLookup


@pytest.mark.parametrize(
    "ids",
    [["C001", "C002", "C010", "C1"], ["b", "a", "ab", "c"], [], ["only"]],
    ids=["sorted", "unsorted", "empty", "one"],
)
def test_lookup_answers_as_a_dict(ids: list[str]) -> None:
    lookup, expected = IdLookup(np.array(ids, dtype=str)), {u: i for i, u in enumerate(ids)}
    for key in [*ids, "", "C0", "C0010", "C0100", "zz", "a" * 50]:
        assert lookup.get(key) == expected.get(key)
        assert lookup.get(key, -1) == expected.get(key, -1)
        assert (key in lookup) == (key in expected)
    assert len(lookup) == len(expected) and list(lookup) == list(expected)
    with pytest.raises(KeyError):
        lookup["missing"]


def test_a_key_longer_than_the_ids_never_matches_their_prefix() -> None:
    lookup = IdLookup(np.array(["C000001", "C000002"]))  # dtype <U7
    assert lookup.get("C0000011") is None and lookup.get("C000001 ") is None
