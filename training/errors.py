"""Errors named for what went wrong. The CLI prints their message as one sentence; the service
maps them to HTTP statuses in one place."""


class RecoError(Exception):
    """Base class: the message is a complete sentence meant for the person running the command."""


class InvalidPurchases(RecoError):
    """A purchase file cannot be used at all (unreadable, a required column missing, a wrong type)."""


class InvalidCatalog(RecoError):
    """A catalog file cannot be used at all."""
