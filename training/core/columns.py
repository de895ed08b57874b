"""Column names of the data contract, defined once (DESIGN.md, "Data contract")."""

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
# An id no request can carry (ids are at most ID_MAX_LENGTH characters): the service ranks popularity
# for it and warms the online-store read paths with it.
UNREQUESTABLE_ID = "\x00" * (ID_MAX_LENGTH + 1)
