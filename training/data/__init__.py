"""The data contract: the purchase and catalog files reco reads (docs/data-contract.md).

contract   schemas, limits, errors for unusable files, the validation report
readers    CSV and Parquet into Arrow, with row numbers
checks     the contract's checks as one DuckDB pass; text cleaning
load       load_purchases, load_catalog, load_training_inputs: what every command calls
duck       one way to open DuckDB for batch steps, and SQL quoting
synthetic  `reco data generate`: a realistic synthetic grocery store
"""
