"""`reco train` (and `reco evaluate`), step by step:

prepare   encode the purchase lines, split them by time, sample the holdouts, align the catalog
fit       fit one configuration and tune it on validation; score it on test; refit on all lines
record    the MLflow run, the logged model, the registered version and its alias
train     the steps in order, with the champion gate (training.gate) between test and registry
"""
