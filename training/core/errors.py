"""The base of every named error: its message is one complete sentence for the person reading it.

The CLI prints it and exits 2; the service maps its own subclasses to HTTP statuses in one place
(service/errors.py)."""


class RecoError(Exception):
    """Something the user can act on, said in one sentence."""


class UnknownContext(RecoError, ValueError):
    """The context is not one of home, buy-again, discover."""
