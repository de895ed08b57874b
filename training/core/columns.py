"""Column names of the data contract and the bounds of their values, defined once
(docs/data-contract.md): the batch loaders (training/data/) and the service's events
(service/events/) check the same."""

from datetime import UTC, datetime, timedelta

USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
QUANTITY = "quantity"
PRICE = "price"
ORDER_ID = "order_id"

PURCHASE_REQUIRED = (USER_ID, ITEM_ID, TIMESTAMP)
PURCHASE_OPTIONAL = (QUANTITY, PRICE, ORDER_ID)
PURCHASE_COLUMNS = PURCHASE_REQUIRED + PURCHASE_OPTIONAL

NAME = "name"
CATEGORY = "category"
BRAND = "brand"
IN_STOCK = "in_stock"

CATALOG_REQUIRED = (ITEM_ID,)
CATALOG_COLUMNS = (ITEM_ID, NAME, CATEGORY, BRAND, PRICE, IN_STOCK)

ID_MAX_LENGTH = 128
QUANTITY_MAX = 1_000_000
# Purchases before the Unix epoch are export defaults (1900-01-01, 0001-01-01), not purchases. Real
# logs go back to the 1990s (MovieLens-100k is of 1997-98), and day-numbered exports map to 1970.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
# Clocks and time zones: a purchase up to a day ahead of now is accepted, later ones are not.
FUTURE_SLACK = timedelta(days=1)
# An id no request can carry (ids are at most ID_MAX_LENGTH characters): the service ranks popularity
# for it and warms the online-store read paths with it.
UNREQUESTABLE_ID = "\x00" * (ID_MAX_LENGTH + 1)
