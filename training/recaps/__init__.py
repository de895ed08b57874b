"""Yearly "Your year with us" recaps for every customer (`reco recaps build`, `reco recaps preview`).

rules    what a customer sees: persona rules and their words, guardrails, options (the docstring lists them)
sql      the DuckDB steps that compute every recap at once
build    build_recaps / build_recap: the pure API over an Arrow table
brand    the shop's settings (one brand file), link templates with UTM, the signed per-customer token
render   subject, preheader, the email page and its text version (templates beside it; the service uses it too)
emails   each customer's email as .html + .txt, .eml, or a row of the merge CSV, in several processes
job      the batch job: guards, files in, links, JSONL + emails + manifest out, published to the online store
preview  a contact sheet of sample recaps and the run's summary, for review before sending
"""
