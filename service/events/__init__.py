"""Purchase events posted by the storefront: routes, service functions, schemas, the event log (store.py and
one backend per module: sqlite_store.py, redis_store.py)."""
