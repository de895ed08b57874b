"""Purchase events posted by the storefront: routes, service functions, schemas, the event log (store.py)."""
