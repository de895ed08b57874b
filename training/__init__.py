"""The offline side of reco: data contract, features, models, evaluation, registry, recaps, CLI."""
