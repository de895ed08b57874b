"""Offline side of reco: purchase data contract, synthetic store, models, evaluation, registry, CLI."""
