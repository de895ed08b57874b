"""The feature store: Feast definitions in feature_repo/, sources built here, served from the online store.

    names        every view, feature service and join key, spelled once (stdlib only; feature_repo/ imports it)
    store        the Feast store for these settings (SQLite by default, Redis when REDIS_URL is set)
    encoding     entity keys, the Redis layout, feature values decoded, freshness (writers and readers share it)
    build        `reco features build`: purchase file → one Parquet source per view (DuckDB)
    materialize  `reco features materialize`: offline Parquet → online store
    redis_store  Feast's Redis online store with a batch write that does per batch what Feast does per row

The service imports `names` and `encoding` (and `store` to open the store at start-up).
"""
