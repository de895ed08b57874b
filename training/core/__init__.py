"""The one ranking core: a model bundle plus a customer's history → a ranked, filtered list.

numpy and scipy only, and nothing else of the project: the trainer evaluates with it and the
service serves with it, so offline metrics measure exactly what production answers.

    columns       the data contract's column names and id limits
    errors        RecoError, the base of every named error
    history       purchase histories, the repurchase ("due") formula, popularity over time
    collaborative the collaborative scorers (factors, item similarity, dense item weights)
    blend         the three signals blended per context
    topk          the k best of a score matrix (a fast path beside its reference)
    bundle        ModelBundle: what a trained model is, how it recommends, which items a list may hold
"""
