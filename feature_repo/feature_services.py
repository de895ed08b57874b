"""Versioned feature services: what each consumer reads, in one call.

recommend_v1 and recap_v1 are read with customer keys only ({"user_id"} / {"user_id", "year"});
item features have their own service because a Feast request needs every join key of every view.
"""

from customers import customer_candidates, customer_profile, customer_recent_items
from feast import FeatureService
from items import item_stats
from recaps import customer_year_recap

recommend_v1 = FeatureService(
    name="recommend_v1",
    features=[customer_profile, customer_recent_items, customer_candidates],
    description="Per-request customer features for ranking: profile, recent and buy-again items, and the "
    "top candidates of the model version (one read: every view of the customer).",
)

items_v1 = FeatureService(
    name="items_v1",
    features=[item_stats],
    description="Item availability, price, category and popularity for filtering and reasons.",
)

recap_v1 = FeatureService(
    name="recap_v1",
    features=[customer_year_recap],
    description="A customer's yearly recap; entity rows carry user_id and year.",
)
