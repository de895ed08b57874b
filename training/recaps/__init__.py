"""Yearly "Your year with us" recaps for every customer (`reco recaps build`).

rules    what a customer sees: persona rules, guardrails, options (the module docstring lists them)
sql      the DuckDB steps that compute every recap at once
build    build_recaps / build_recap: the pure API over an Arrow table
render   the email page and its text version (Jinja2 templates beside it; the service uses it too)
emails   one .html and one .txt file per customer, in several processes
job      the batch job: files in, JSONL + emails + manifest out, published to the online store
"""
