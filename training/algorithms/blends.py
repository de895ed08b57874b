"""The fixed blends: each baseline's weights, and the hybrid's starting points that tuning moves from."""

from __future__ import annotations

from training.core.blend import Blend

HYBRID_START = Blend(repurchase=1.0, collaborative=1.0, popularity=1e-3)
# Catalogue-style data (nobody buys the same film twice): home = discovery only.
DISCOVERY_ONLY = Blend(collaborative=1.0, popularity=1e-3, home_excludes_bought=True)


def baseline_blend(name: str) -> Blend:
    """Fixed blends: popularity, personal frequency (own purchases first, popular after), a pure collaborative model."""
    if name == "popularity":
        return Blend(popularity=1.0)
    if name == "frequency":
        return Blend(repurchase=1.0, popularity=1e-3)
    return Blend(collaborative=1.0, popularity=1e-3)  # a collaborative model (or "alone": the hybrid's own)
